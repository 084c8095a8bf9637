package storagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func startGCS(logf func(string, ...any)) (*shared, error) {
	bin, err := goInstall(logf, FakeGCSPackage, FakeGCSVersion)
	if err != nil {
		return nil, err
	}
	root, err := runDir("fake-gcs-server")
	if err != nil {
		return nil, err
	}
	proc, endpoint, err := startServer("fake-gcs-server "+FakeGCSVersion, 30*time.Second,
		func(port int) (*process, error) {
			host := "127.0.0.1:" + strconv.Itoa(port)
			return startProcess("fake-gcs-server", []string{bin,
				"-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(port),
				"-backend", "memory",
				// Resumable uploads are sent to the Location the server
				// returns, built from these.
				"-external-url", "http://" + host, "-public-host", host,
				"-log-level", "warn",
			}, serverEnv(), root)
		},
		func(ctx context.Context, endpoint string) error {
			return gcsDo(ctx, http.MethodGet, endpoint+"/storage/v1/b", nil, nil)
		})
	if err != nil {
		return nil, err
	}
	host := strings.TrimPrefix(endpoint, "http://")
	return &shared{
		provider: ProviderGCS,
		version:  "fake-gcs-server " + FakeGCSVersion,
		endpoint: endpoint,
		env: map[string]string{
			// host:port without a scheme: gcsblob prepends "http://".
			"STORAGE_EMULATOR_HOST":      host,
			"STORAGE_EMULATOR_HOST_GRPC": "",
		},
		url: func(bucket, prefix string) string {
			if prefix == "" {
				return "gs://" + bucket
			}
			return "gs://" + bucket + "?" + url.Values{"prefix": {prefix}}.Encode()
		},
		be:   gcsBackend{endpoint},
		proc: proc,
	}, nil
}

// gcsBackend manages buckets through the emulator's JSON API directly.
type gcsBackend struct{ endpoint string }

func gcsDo(ctx context.Context, method, u string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(b))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

func (b gcsBackend) createBucket(ctx context.Context, name string) error {
	return gcsDo(ctx, http.MethodPost, b.endpoint+"/storage/v1/b?project=convsync-test", map[string]string{"name": name}, nil)
}

func (b gcsBackend) deleteBucket(ctx context.Context, name string) error {
	base := b.endpoint + "/storage/v1/b/" + url.PathEscape(name)
	token := ""
	for {
		var page struct {
			Items []struct {
				Name string `json:"name"`
			} `json:"items"`
			NextPageToken string `json:"nextPageToken"`
		}
		q := url.Values{}
		if token != "" {
			q.Set("pageToken", token)
		}
		if err := gcsDo(ctx, http.MethodGet, base+"/o?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		for _, o := range page.Items {
			if err := gcsDo(ctx, http.MethodDelete, base+"/o/"+url.PathEscape(o.Name), nil, nil); err != nil {
				return err
			}
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	return gcsDo(ctx, http.MethodDelete, base, nil, nil)
}

func (gcsBackend) pending(context.Context, string) ([]string, error) { return nil, nil }

func (gcsBackend) abortPending(context.Context, string) (int, error) { return 0, nil }
