package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"

	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/blob/blobtest"
)

const testBucket = "sbx-test"

// fakeS3 starts an in-process S3 server with an empty bucket and returns
// a store on it, with the smallest part size so that the suite's large
// objects go up as multipart uploads.
func fakeS3(t *testing.T) (*Store, Config) {
	t.Helper()
	backend := replacingBackend{s3mem.New()}
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	cfg := Config{
		Endpoint:   srv.URL,
		Bucket:     testBucket,
		AccessKey:  "test-access",
		SecretKey:  "test-secret",
		PathStyle:  true,
		PartSize:   MinPartSize,
		MaxRetries: 2,
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, cfg
}

// replacingBackend fixes one deviation of gofakes3 from S3: a PUT over an
// existing object keeps those of the old object's metadata entries that the
// new one lacks (gofakes3.MergeMetadata), where S3 replaces the metadata
// whole, as the blob contract requires. The body is read first, so a
// failed upload still leaves the old object alone.
type replacingBackend struct{ *s3mem.Backend }

func (b replacingBackend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	data, err := gofakes3.ReadAll(input, size)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	if _, err := b.Backend.DeleteObject(bucket, key); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	return b.Backend.PutObject(bucket, key, meta, bytes.NewReader(data), size, cond)
}

func TestConformanceFake(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, _ := fakeS3(t)
		return s
	})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty: valid
	}{
		{"host and port", Config{Endpoint: "127.0.0.1:9000", Bucket: "b1b"}, ""},
		{"http URL", Config{Endpoint: "http://s3.local:9000", Bucket: "bkt"}, ""},
		{"https URL", Config{Endpoint: "https://s3.local/", Bucket: "bkt", AccessKey: "a", SecretKey: "s"}, ""},
		{"empty endpoint", Config{Bucket: "bkt"}, "endpoint is empty"},
		{"bad scheme", Config{Endpoint: "ftp://x", Bucket: "bkt"}, "scheme must be http or https"},
		{"https without TLS", Config{Endpoint: "https://x", Bucket: "bkt", DisableTLS: true}, "TLS is disabled"},
		{"endpoint with path", Config{Endpoint: "http://x/bucket", Bucket: "bkt"}, "no path"},
		{"bad bucket", Config{Endpoint: "x", Bucket: "Bad_Bucket"}, `bucket "Bad_Bucket"`},
		{"empty bucket", Config{Endpoint: "x"}, `bucket ""`},
		{"half credentials", Config{Endpoint: "x", Bucket: "bkt", AccessKey: "a"}, "both the access key and the secret key"},
		{"small parts", Config{Endpoint: "x", Bucket: "bkt", PartSize: 1 << 20}, "below S3's minimum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestFailedPutAbortsUpload checks that a multipart upload whose source
// fails is aborted, not just left incomplete.
func TestFailedPutAbortsUpload(t *testing.T) {
	s, _ := fakeS3(t)
	ctx := t.Context()
	boom := errors.New("boom")
	src := io.MultiReader(bytes.NewReader(make([]byte, 3*MinPartSize)), errReader{boom})
	if _, err := s.Put(ctx, "big/obj", src, blob.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Put err = %v, want boom", err)
	}
	assertNoUploads(t, s)
}

func assertNoUploads(t *testing.T, s *Store) {
	t.Helper()
	for u := range s.c.ListIncompleteUploads(t.Context(), s.bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("ListIncompleteUploads: %v", u.Err)
		}
		t.Errorf("incomplete upload left behind: key %q id %q", u.Key, u.UploadID)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestMetadataKeysAreNotHeaders checks that metadata named like standard
// HTTP headers stays metadata and does not change the object's headers.
func TestMetadataKeysAreNotHeaders(t *testing.T) {
	s, _ := fakeS3(t)
	ctx := t.Context()
	meta := map[string]string{"content-type": "text/evil", "expires": "soon", "x-amz-acl": "public-read-write"}
	if _, err := s.Put(ctx, "k", strings.NewReader("x"), blob.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Metadata) != 3 || info.Metadata["content-type"] != "text/evil" || info.Metadata["x-amz-acl"] != "public-read-write" {
		t.Errorf("metadata = %q, want %q", info.Metadata, meta)
	}
	oi, err := s.c.StatObject(ctx, s.bucket, "k", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if oi.ContentType != "application/octet-stream" {
		t.Errorf("object Content-Type = %q, want application/octet-stream", oi.ContentType)
	}
}

func TestMissingBucket(t *testing.T) {
	s, cfg := fakeS3(t)
	cfg.Bucket = "no-such-bucket"
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check of an existing bucket: %v", err)
	}
	if err := s2.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Check = %v, want an error saying the bucket does not exist", err)
	}
	_, err = s2.Put(ctx, "k", strings.NewReader("x"), blob.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("Put into a missing bucket: err = %v, want one naming the bucket", err)
	}
	// A missing bucket is not a missing object: callers must not take it
	// for "nothing stored yet". (Stat cannot tell: a HEAD's 404 has no
	// body saying which; that is what Check is for.)
	rc, _, err := s2.Get(ctx, "k")
	if err == nil {
		rc.Close()
	}
	if err == nil || errors.Is(err, blob.ErrNotFound) || !strings.Contains(err.Error(), "bucket does not exist") {
		t.Errorf("Get in a missing bucket: err = %v, want one saying the bucket does not exist, not ErrNotFound", err)
	}
	for _, err := range s2.List(ctx, "") {
		if err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Errorf("List of a missing bucket: err = %v, want one naming the bucket", err)
		}
	}
}

func TestUnreachableServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	s, err := New(Config{Endpoint: url, Bucket: testBucket, PathStyle: true, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = s.Put(ctx, "k", strings.NewReader("x"), blob.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(url, "http://")) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Put to a dead server: err = %v, want one naming the endpoint and the refusal", err)
	}
}

// TestPartBoundaries round-trips objects around the part size, where Put
// switches from a single PUT to a multipart upload.
func TestPartBoundaries(t *testing.T) {
	s, _ := fakeS3(t)
	ctx := t.Context()
	for _, size := range []int{0, 1, MinPartSize - 1, MinPartSize, MinPartSize + 1, 2 * MinPartSize, 2*MinPartSize + 1} {
		data := bytes.Repeat([]byte{byte(size), byte(size >> 8), 0xa5}, size/3+1)[:size]
		key := fmt.Sprintf("parts/%d", size)
		// iotest.HalfReader makes short reads, as pipes and sockets do.
		info, err := s.Put(ctx, key, iotest.HalfReader(bytes.NewReader(data)), blob.PutOptions{})
		if err != nil {
			t.Fatalf("Put %d bytes: %v", size, err)
		}
		rc, ginfo, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) || info.Size != int64(size) || ginfo.Size != int64(size) {
			t.Errorf("size %d: read %d bytes (err %v, equal %v), Put size %d, Get size %d",
				size, len(got), err, bytes.Equal(got, data), info.Size, ginfo.Size)
		}
	}
}

// TestListSkipsForeignKeys checks that objects other tools wrote under
// keys the blob contract refuses neither appear in nor break a listing.
func TestListSkipsForeignKeys(t *testing.T) {
	s, _ := fakeS3(t)
	ctx := t.Context()
	for _, k := range []string{"f/dir/", "f//double", "f/./dot"} {
		if _, err := s.c.PutObject(ctx, s.bucket, k, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("raw put %q: %v", k, err)
		}
	}
	if _, err := s.Put(ctx, "f/ok", strings.NewReader("x"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for info, err := range s.List(ctx, "f/") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		keys = append(keys, info.Key)
	}
	if strings.Join(keys, " ") != "f/ok" {
		t.Errorf("List = %q, want only f/ok", keys)
	}
}
