package storagetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// The S3 server's root credentials and region: test values of this package
// (versitygw has no built-in default), given to versitygw in its environment.
const (
	s3AccessKey = "convsync-test-access"
	s3SecretKey = "convsync-test-secret"
	s3Region    = "us-east-1"
)

func startS3(logf func(string, ...any)) (*shared, error) {
	bin, err := goInstall(logf, VersityGWPackage, VersityGWVersion)
	if err != nil {
		return nil, err
	}
	root, err := runDir("versitygw")
	if err != nil {
		return nil, err
	}
	// Object metadata goes to a sidecar directory rather than extended
	// attributes, so any filesystem under TMPDIR will do.
	data, meta := filepath.Join(root, "data"), filepath.Join(root, "meta")
	for _, d := range []string{data, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var client *s3.Client
	proc, endpoint, err := startServer("versitygw "+VersityGWVersion, 30*time.Second,
		func(port int) (*process, error) {
			return startProcess("versitygw", []string{bin,
				"--port", "127.0.0.1:" + strconv.Itoa(port),
				"--region", s3Region, "--quiet",
				"posix", "--sidecar", meta, data,
			}, serverEnv("ROOT_ACCESS_KEY="+s3AccessKey, "ROOT_SECRET_KEY="+s3SecretKey), root) // keys kept out of argv
		},
		func(ctx context.Context, endpoint string) error {
			if err := httpAnswers(ctx, endpoint+"/"); err != nil {
				return err // before the SDK, whose retries would wait longer
			}
			client = newS3Client(endpoint, s3AccessKey, s3SecretKey)
			_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
			return err
		})
	if err != nil {
		return nil, err
	}
	return &shared{
		provider: ProviderS3,
		version:  "versitygw " + VersityGWVersion,
		endpoint: endpoint,
		env:      s3Env(s3AccessKey, s3SecretKey),
		badEnv:   s3Env(s3AccessKey, s3SecretKey+"-wrong"),
		url: func(bucket, prefix string) string {
			q := url.Values{"endpoint": {endpoint}, "use_path_style": {"true"}, "region": {s3Region}}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			return "s3://" + bucket + "?" + q.Encode()
		},
		be:   s3Backend{client},
		proc: proc,
	}, nil
}

// s3Env: static credentials for the SDK's default chain, and blanks for what
// could send it elsewhere (a profile, shared config files, IMDS, an
// AWS_ENDPOINT_URL of the developer's).
func s3Env(access, secret string) map[string]string {
	none := filepath.Join(os.TempDir(), "convsync-storagetest-no-aws-config")
	return map[string]string{
		"AWS_ACCESS_KEY_ID":           access,
		"AWS_SECRET_ACCESS_KEY":       secret,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  s3Region,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	}
}

func newS3Client(endpoint, access, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:       s3Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
}

type s3Backend struct{ c *s3.Client }

func (b s3Backend) createBucket(ctx context.Context, name string) error {
	_, err := b.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return err
}

func (b s3Backend) deleteBucket(ctx context.Context, name string) error {
	if _, err := b.abortPending(ctx, name); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(b.c, &s3.ListObjectsV2Input{Bucket: aws.String(name)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			if _, err := b.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(name), Key: o.Key}); err != nil {
				return err
			}
		}
	}
	_, err := b.c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
	return err
}

func (b s3Backend) uploads(ctx context.Context, bucket string) ([]types.MultipartUpload, error) {
	var all []types.MultipartUpload
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	for {
		out, err := b.c.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, out.Uploads...)
		if !aws.ToBool(out.IsTruncated) {
			return all, nil
		}
		if out.NextKeyMarker == nil && out.NextUploadIdMarker == nil {
			return nil, errors.New("ListMultipartUploads: truncated without a next marker")
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

func (b s3Backend) pending(ctx context.Context, bucket string) ([]string, error) {
	ups, err := b.uploads(ctx, bucket)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ups))
	for _, u := range ups {
		out = append(out, aws.ToString(u.Key)+" "+aws.ToString(u.UploadId))
	}
	return out, nil
}

func (b s3Backend) abortPending(ctx context.Context, bucket string) (int, error) {
	ups, err := b.uploads(ctx, bucket)
	if err != nil {
		return 0, err
	}
	var errs []string
	for _, u := range ups {
		_, err := b.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", aws.ToString(u.Key), err))
		}
	}
	if errs != nil {
		return len(ups), errors.New(strings.Join(errs, "; "))
	}
	return len(ups), nil
}
