package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/sbx-dev/sbx/internal/backup"
	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/blob/local"
	"github.com/sbx-dev/sbx/internal/blob/s3"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

// blobOptions configure the blob store that holds backups and the file
// systems of persistent sandboxes.
type blobOptions struct {
	BlobStore   string `json:"blob-store"`
	BlobDir     string `json:"blob-dir"`
	S3Endpoint  string `json:"s3-endpoint"`
	S3Bucket    string `json:"s3-bucket"`
	S3Region    string `json:"s3-region"`
	S3AccessKey string `json:"s3-access-key"`
	S3SecretKey string `json:"s3-secret-key"`
	S3PathStyle bool   `json:"s3-path-style"`
	// BackupGCInterval is how often expired backups are collected.
	BackupGCInterval time.Duration `json:"-"`
}

func (o *blobOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.BlobStore, "blob-store", "local", "where backups and persistent sandboxes' files go: local (a directory) or s3")
	f.StringVar(&o.BlobDir, "blob-dir", "", "directory of the local blob store (default <data-dir>/blobs)")
	f.StringVar(&o.S3Endpoint, "s3-endpoint", "", "S3 server for --blob-store s3: https://host[:port] or http://host[:port]")
	f.StringVar(&o.S3Bucket, "s3-bucket", "", "existing bucket for --blob-store s3")
	f.StringVar(&o.S3Region, "s3-region", "", "bucket region (default us-east-1)")
	f.StringVar(&o.S3AccessKey, "s3-access-key", "", "S3 access key (default $SBX_S3_ACCESS_KEY, else $AWS_ACCESS_KEY_ID)")
	f.StringVar(&o.S3SecretKey, "s3-secret-key", "", "S3 secret key (default $SBX_S3_SECRET_KEY, else $AWS_SECRET_ACCESS_KEY)")
	f.BoolVar(&o.S3PathStyle, "s3-path-style", false, "address the bucket as host/bucket (most self-hosted S3 servers need it)")
	f.DurationVar(&o.BackupGCInterval, "backup-gc-interval", time.Minute, "how often expired backups are deleted")
	_ = f.MarkHidden("backup-gc-interval") // for tests
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// open opens the configured blob store and checks that it works.
func (o *blobOptions) open(ctx context.Context, dataDir string) (blob.Store, error) {
	switch o.BlobStore {
	case "local":
		dir := o.BlobDir
		if dir == "" {
			dir = filepath.Join(dataDir, "blobs")
		}
		st, err := local.New(dir)
		if err != nil {
			return nil, fmt.Errorf("--blob-store local: %w", err)
		}
		return st, nil
	case "s3":
		ak, sk := o.S3AccessKey, o.S3SecretKey
		if ak == "" {
			ak = firstEnv("SBX_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
		}
		if sk == "" {
			sk = firstEnv("SBX_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
		}
		st, err := s3.New(s3.Config{Endpoint: o.S3Endpoint, Bucket: o.S3Bucket, Region: o.S3Region,
			AccessKey: ak, SecretKey: sk, PathStyle: o.S3PathStyle, MaxRetries: 3})
		if err != nil {
			return nil, fmt.Errorf("--blob-store s3: %w", err)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := st.Check(cctx); err != nil {
			return nil, fmt.Errorf("--blob-store s3: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("--blob-store %q: use local or s3", o.BlobStore)
}

// managerRef lets the backup service, which the manager needs for
// persistent sandboxes, reach the manager made after it.
type managerRef struct{ m **sandbox.Manager }

func (r managerRef) Acquire(ctx context.Context, id string) (*sandbox.Lease, error) {
	return (*r.m).Acquire(ctx, id)
}

// newBackups returns the backup service on the configured blob store, and
// sets *mgr's reference for it to fill in.
func newBackups(ctx context.Context, o *blobOptions, dataDir string, st *store.Store, mgr **sandbox.Manager, log *slog.Logger) (*backup.Service, error) {
	blobs, err := o.open(ctx, dataDir)
	if err != nil {
		return nil, err
	}
	log.Info("blob store ready", "kind", o.BlobStore)
	return backup.New(backup.Config{Blobs: blobs, DB: st, Sandboxes: managerRef{mgr}, Logger: log,
		GCInterval: o.BackupGCInterval}), nil
}
