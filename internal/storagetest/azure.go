package storagetest

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Azurite's built-in account: Microsoft's published development-storage
// account name and key.
const (
	azureAccount = "devstoreaccount1"
	azureKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

func startAzure(logf func(string, ...any)) (*shared, error) {
	node, mainJS, err := npmInstallAzurite(logf)
	if err != nil {
		return nil, err
	}
	root, err := runDir("azurite")
	if err != nil {
		return nil, err
	}
	var svc *azblob.Client
	proc, endpoint, err := startServer("azurite "+AzuriteVersion, 60*time.Second,
		func(port int) (*process, error) {
			return startProcess("azurite", []string{node, mainJS,
				"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
				"--inMemoryPersistence", "--extentMemoryLimit", "2048",
				"--disableTelemetry",    // it would phone home otherwise
				"--skipApiVersionCheck", // the Go SDK speaks a newer x-ms-version
				"--loose", "--silent",
			}, serverEnv(), root)
		},
		func(ctx context.Context, endpoint string) error {
			if err := httpAnswers(ctx, endpoint+"/"+azureAccount+"?comp=list"); err != nil {
				return err
			}
			cred, err := azblob.NewSharedKeyCredential(azureAccount, azureKey)
			if err != nil {
				return err
			}
			svc, err = azblob.NewClientWithSharedKeyCredential(endpoint+"/"+azureAccount+"/", cred, nil)
			return err
		})
	if err != nil {
		return nil, err
	}
	host := strings.TrimPrefix(endpoint, "http://")
	env := func(key string) map[string]string {
		return map[string]string{
			"AZURE_STORAGE_ACCOUNT": azureAccount,
			"AZURE_STORAGE_KEY":     key,
			// Blanks, so a developer's own settings can't take over.
			"AZURE_STORAGE_SAS_TOKEN":            "",
			"AZURE_STORAGE_CONNECTION_STRING":    "",
			"AZURE_STORAGEBLOB_CONNECTIONSTRING": "",
		}
	}
	return &shared{
		provider: ProviderAzure,
		version:  "azurite " + AzuriteVersion,
		endpoint: endpoint,
		env:      env(azureKey),
		badEnv:   env("d3Jvbmcga2V5IGZvciBhIHRlc3Q="),
		url: func(bucket, prefix string) string {
			q := url.Values{"domain": {host}, "protocol": {"http"}, "localemu": {"true"}}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			return "azblob://" + bucket + "?" + q.Encode()
		},
		be:   azureBackend{svc},
		proc: proc,
	}, nil
}

type azureBackend struct{ c *azblob.Client }

func (b azureBackend) createBucket(ctx context.Context, name string) error {
	_, err := b.c.CreateContainer(ctx, name, nil)
	return err
}

func (b azureBackend) deleteBucket(ctx context.Context, name string) error {
	_, err := b.c.DeleteContainer(ctx, name, nil)
	return err
}

// pending lists blobs that exist only as staged blocks: those a listing that
// includes uncommitted blobs has and a plain listing has not.
func (b azureBackend) pending(ctx context.Context, bucket string) ([]string, error) {
	cc := b.c.ServiceClient().NewContainerClient(bucket)
	list := func(uncommitted bool) (map[string]bool, error) {
		names := map[string]bool{}
		p := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{UncommittedBlobs: uncommitted}})
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, it := range page.Segment.BlobItems {
				names[*it.Name] = true
			}
		}
		return names, nil
	}
	all, err := list(true)
	if err != nil {
		return nil, err
	}
	committed, err := list(false)
	if err != nil {
		return nil, err
	}
	var out []string
	for n := range all {
		if !committed[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (azureBackend) abortPending(context.Context, string) (int, error) { return 0, nil }
