// Package s3 is a blob.Store on an S3-compatible object store (AWS S3,
// MinIO, versitygw, Ceph RGW, Garage, ...), through minio-go.
//
// Put streams: an object that fits in one part (Config.PartSize) goes up in
// a single PUT; a larger one, or one of unknown length, goes up as a
// multipart upload, one part at a time, so memory stays near two parts per
// Put whatever the object's size. S3 makes an object visible only when its
// upload completes; a Put whose source or context fails aborts the upload,
// so nothing partial is ever listed. If the server itself is unreachable the
// abort fails too and the incomplete upload stays on the server (invisible,
// but holding space) until a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) removes it.
//
// S3 returns no user metadata in listings, so List asks for each object's
// metadata with a HEAD request, a few at a time.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/sbx-dev/sbx/internal/blob"
)

const (
	// DefaultPartSize is the part size when Config.PartSize is 0. With
	// S3's limit of 10,000 parts it allows objects up to 160 GiB.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part size (but for the last part).
	MinPartSize = 5 << 20
	// maxParts is S3's limit on the parts of one upload.
	maxParts = 10000
	// statWindow is how many HEAD requests List keeps in flight.
	statWindow = 8
)

// Config locates a bucket.
type Config struct {
	// Endpoint is the server's host[:port], or a URL with scheme http or
	// https and no path. "http://" means the same as DisableTLS.
	Endpoint string
	// Bucket must exist; the store does not create it.
	Bucket string
	// Region is the bucket's region; empty means "us-east-1", which most
	// self-hosted servers expect.
	Region string
	// AccessKey and SecretKey are the credentials (AWS signature v4).
	// Both empty means anonymous requests.
	AccessKey, SecretKey string
	// PathStyle sends requests as http://host/bucket/key instead of
	// http://bucket.host/key. Most self-hosted servers need it.
	PathStyle bool
	// DisableTLS talks plain HTTP.
	DisableTLS bool
	// PartSize is the multipart part size in bytes, and so the memory a
	// Put buffers; 0 means DefaultPartSize. At least MinPartSize. The
	// largest object is 10,000 parts.
	PartSize int64
	// MaxRetries bounds the attempts of each request on network and 5xx
	// errors (with backoff); 0 means minio-go's default of 10.
	MaxRetries int
	// Transport overrides the HTTP transport (tests, custom CAs).
	Transport http.RoundTripper
}

// Store is a blob.Store on one S3 bucket.
type Store struct {
	c        *minio.Client
	bucket   string
	where    string // "s3 http://host bucket b", for errors
	partSize int64
}

var _ blob.Store = (*Store)(nil)

// New returns a store for cfg. It does no I/O; Check verifies that the
// bucket is reachable.
func New(cfg Config) (*Store, error) {
	bad := func(format string, args ...any) (*Store, error) {
		return nil, fmt.Errorf("s3 blob store: "+format, args...)
	}
	host, secure := cfg.Endpoint, !cfg.DisableTLS
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil {
			return bad("endpoint %q is not a valid URL: %v", cfg.Endpoint, err)
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return bad("endpoint %q: scheme must be http or https", cfg.Endpoint)
		case u.Scheme == "https" && cfg.DisableTLS:
			return bad("endpoint %q says https but TLS is disabled", cfg.Endpoint)
		case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil:
			return bad("endpoint %q must be scheme://host[:port] with no path, query or user", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	if host == "" {
		return bad("endpoint is empty; set it to host[:port] of the S3 server")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return bad("bucket %q: %v", cfg.Bucket, err)
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return bad("set both the access key and the secret key, or neither for anonymous access")
	}
	partSize := cfg.PartSize
	switch {
	case partSize == 0:
		partSize = DefaultPartSize
	case partSize < MinPartSize:
		return bad("part size %d is below S3's minimum of %d bytes (5 MiB)", partSize, MinPartSize)
	case partSize > 5<<30:
		return bad("part size %d is above S3's maximum of 5 GiB", partSize)
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	c, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
		Transport:    cfg.Transport,
	})
	if err != nil {
		return bad("%v", err)
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	return &Store{
		c:        c,
		bucket:   cfg.Bucket,
		where:    fmt.Sprintf("s3 %s://%s bucket %s", scheme, host, cfg.Bucket),
		partSize: partSize,
	}, nil
}

// String names the store in logs.
func (s *Store) String() string { return s.where }

// Check verifies that the bucket exists and the credentials reach it.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob: %s: cannot reach the bucket: %w", s.where, err)
	}
	if !ok {
		return fmt.Errorf("blob: %s: the bucket does not exist; create it first", s.where)
	}
	return nil
}

// fail wraps err from operation op on key, mapping S3 error codes to the
// blob sentinels.
func (s *Store) fail(op, key string, err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("blob: %s %q: %w", op, key, blob.ErrNotFound)
		case "NoSuchBucket":
			return fmt.Errorf("blob: %s %q: %s: the bucket does not exist", op, key, s.where)
		case "ExistingObjectIsDirectory", "ObjectParentIsFile", "DirectoryObjectContainsData":
			// Servers on a filesystem cannot hold "a" beside "a/b".
			return fmt.Errorf("blob: %s %q: %w: %s refused it beside an existing key: %s", op, key, blob.ErrConflict, s.where, er.Message)
		}
		if er.StatusCode == http.StatusNotFound && op != "put" {
			return fmt.Errorf("blob: %s %q: %w", op, key, blob.ErrNotFound)
		}
	}
	return fmt.Errorf("blob: %s %q: %s: %w", op, key, s.where, err)
}

// source records the error of the caller's reader, so Put can tell a
// failing source from a failing server, and stops once ctx is done.
type source struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err // reported as the context's, not the source's
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// readHead reads from r until EOF or until it holds more than limit
// bytes, growing its buffer as data arrives so that small objects cost
// little memory. eof reports whether r ended within limit bytes.
func readHead(r io.Reader, limit int64) (buf []byte, eof bool, err error) {
	buf = make([]byte, 0, min(64<<10, limit+1))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return buf, false, nil
			}
			// Double while small; past 1 MiB the object is likely big,
			// and one jump to the full part saves copying and garbage.
			next := 2 * int64(cap(buf))
			if next > 1<<20 {
				next = limit + 1
			}
			grown := make([]byte, len(buf), min(next, limit+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := blob.ValidateMetadata(opts.Metadata); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	meta := make(map[string]string, len(opts.Metadata))
	for k, v := range opts.Metadata {
		// The explicit prefix keeps minio-go from sending keys such as
		// "content-type" or "expires" as standard headers.
		meta["x-amz-meta-"+k] = blob.EscapeValue(v)
	}
	popts := minio.PutObjectOptions{
		UserMetadata: meta,
		ContentType:  "application/octet-stream",
		PartSize:     uint64(s.partSize),
		// Sign headers only, as minio-go does over TLS anyway, instead of
		// aws-chunked payload signing over plain HTTP, which some servers
		// mishandle for parts. Integrity comes from the Content-MD5 of
		// every part and single PUT, which every S3 server verifies (the
		// newer x-amz-checksum headers need trailers that not all accept).
		DisableContentSha256: true,
		SendContentMd5:       true,
	}
	src := &source{ctx: ctx, r: r}
	head, eof, err := readHead(src, s.partSize)
	switch {
	case src.err != nil:
		return blob.Info{}, fmt.Errorf("blob: put %q: reading the source: %w", key, src.err)
	case err != nil:
		return blob.Info{}, fmt.Errorf("blob: put %q: %w", key, err) // ctx is done
	}
	var up minio.UploadInfo
	if eof {
		// It fits in one part: a single PUT, which S3 applies whole.
		up, err = s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(head), int64(len(head)), popts)
	} else {
		// A multipart upload of unknown length: minio-go reads one part
		// at a time into a buffer of PartSize, and aborts the upload if
		// the source or the context fails.
		body := io.MultiReader(bytes.NewReader(head), src)
		up, err = s.c.PutObject(ctx, s.bucket, key, body, -1, popts)
	}
	switch {
	case src.err != nil:
		return blob.Info{}, fmt.Errorf("blob: put %q: reading the source: %w", key, src.err)
	case err != nil && ctx.Err() != nil:
		return blob.Info{}, fmt.Errorf("blob: put %q: %w", key, ctx.Err())
	case err != nil:
		return blob.Info{}, s.fail("put", key, err)
	case up.Size != src.n:
		// Cannot happen with a working client; never report success
		// for an object that is not what was read.
		return blob.Info{}, fmt.Errorf("blob: put %q: %s stored %d bytes, the source had %d", key, s.where, up.Size, src.n)
	}
	mtime := up.LastModified
	if mtime.IsZero() {
		mtime = time.Now()
	}
	m := make(map[string]string, len(opts.Metadata))
	for k, v := range opts.Metadata {
		m[k] = v
	}
	return blob.Info{Key: key, Size: up.Size, ModTime: mtime, Metadata: m}, nil
}

// info converts minio's description of an object.
func (s *Store) info(op, key string, oi minio.ObjectInfo) (blob.Info, error) {
	meta := make(map[string]string, len(oi.UserMetadata))
	for k, v := range oi.UserMetadata {
		// Header names come back canonicalised ("Created-At").
		u, err := blob.UnescapeValue(v)
		if err != nil {
			return blob.Info{}, fmt.Errorf("blob: %s %q: %s: metadata %q: %w", op, key, s.where, k, err)
		}
		meta[strings.ToLower(k)] = u
	}
	return blob.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified, Metadata: meta}, nil
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, fmt.Errorf("blob: get %q: %w", key, err)
	}
	// One GET: the headers describe the object, the body streams it.
	// (minio.Client.GetObject would send a HEAD first, whose 404 cannot
	// tell a missing key from a missing bucket.)
	body, oi, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return nil, blob.Info{}, fmt.Errorf("blob: get %q: %w", key, ctx.Err())
		}
		return nil, blob.Info{}, s.fail("get", key, err)
	}
	info, err := s.info("get", key, oi)
	if err != nil {
		body.Close()
		return nil, blob.Info{}, err
	}
	return &reader{ctx: ctx, body: body, s: s, key: key}, info, nil
}

type reader struct {
	ctx  context.Context
	body io.ReadCloser
	s    *Store
	key  string
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("blob: read %q: %w", r.key, err)
	}
	n, err := r.body.Read(p)
	if err != nil && err != io.EOF {
		if r.ctx.Err() != nil {
			return n, fmt.Errorf("blob: read %q: %w", r.key, r.ctx.Err())
		}
		return n, fmt.Errorf("blob: read %q: %s: %w", r.key, r.s.where, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.body.Close() }

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("blob: stat %q: %w", key, err)
	}
	oi, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return blob.Info{}, fmt.Errorf("blob: stat %q: %w", key, ctx.Err())
		}
		return blob.Info{}, s.fail("stat", key, err)
	}
	return s.info("stat", key, oi)
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	// S3 answers 204 for a missing key too.
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("blob: delete %q: %w", key, ctx.Err())
		}
		return s.fail("delete", key, err)
	}
	return nil
}

// List implements blob.Store. Keys come in the server's order, which S3
// defines as ascending UTF-8 byte order.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[blob.Info, error] {
	return func(yield func(blob.Info, error) bool) {
		if err := blob.ValidatePrefix(prefix); err != nil {
			yield(blob.Info{}, err)
			return
		}
		if err := ctx.Err(); err != nil {
			yield(blob.Info{}, fmt.Errorf("blob: list %q: %w", prefix, err))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops the listing and the HEADs in flight

		// The producer starts a HEAD per listed key and queues its
		// result slot in key order; the queue's capacity bounds the
		// HEADs in flight.
		type slot struct {
			done chan struct{}
			info blob.Info
			err  error
			gone bool // deleted since it was listed
		}
		queue := make(chan *slot, statWindow)
		go func() {
			defer close(queue)
			for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
				if oi.Err == nil && blob.ValidateKey(oi.Key) != nil {
					// Written by another tool ("dir/" markers, "a//b"):
					// not addressable through blob.Store, so not listed.
					continue
				}
				sl := &slot{done: make(chan struct{})}
				if oi.Err != nil {
					sl.err = fmt.Errorf("blob: list %q: %s: %w", prefix, s.where, oi.Err)
					close(sl.done)
				} else {
					go func() {
						defer close(sl.done)
						sl.info, sl.err = s.Stat(ctx, oi.Key)
						if errors.Is(sl.err, blob.ErrNotFound) {
							sl.gone, sl.err = true, nil
						}
					}()
				}
				select {
				case queue <- sl:
				case <-ctx.Done():
					return
				}
				if oi.Err != nil {
					return
				}
			}
		}()
		for sl := range queue {
			<-sl.done
			if sl.err != nil {
				err := sl.err
				if ctx.Err() != nil {
					err = fmt.Errorf("blob: list %q: %w", prefix, ctx.Err())
				}
				yield(blob.Info{}, err)
				return
			}
			if sl.gone {
				continue
			}
			if !yield(sl.info, nil) {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			// minio-go ends the listing silently when ctx is done.
			yield(blob.Info{}, fmt.Errorf("blob: list %q: %w", prefix, err))
		}
	}
}

var _ blob.Sweeper = (*Store)(nil)

// Sweep aborts the multipart uploads under prefix begun before olderThan:
// the parts of a Put whose abort failed because the server was down when
// it failed.
func (s *Store) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return 0, fmt.Errorf("blob: sweep %q: %w", prefix, err)
	}
	n := 0
	for up := range s.c.ListIncompleteUploads(ctx, s.bucket, prefix, true) {
		if up.Err != nil {
			return n, fmt.Errorf("blob: sweep %q: listing unfinished uploads at %s: %w", prefix, s.where, up.Err)
		}
		if !up.Initiated.Before(olderThan) {
			continue
		}
		if err := (minio.Core{Client: s.c}).AbortMultipartUpload(ctx, s.bucket, up.Key, up.UploadID); err != nil {
			return n, fmt.Errorf("blob: sweep %q: aborting the upload of %q at %s: %w", prefix, up.Key, s.where, err)
		}
		n++
	}
	return n, ctx.Err()
}
