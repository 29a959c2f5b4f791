package api

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Error codes of bucket mounts.
const (
	// CodeMountNotFound: the sandbox has no mount at that path.
	CodeMountNotFound = "MOUNT_NOT_FOUND"
	// CodeMountFailed: the bucket could not be reached, listed, read or
	// written; the message says which and why. A failed mount leaves
	// nothing behind in the sandbox.
	CodeMountFailed = "MOUNT_FAILED"
)

// MountRequest is the body of POST /v1/sandboxes/{id}/mounts: copy the
// objects under Prefix of an S3-compatible bucket into Path, and (unless
// ReadOnly) write changes back on sync and unmount.
type MountRequest struct {
	// Bucket is the bucket name.
	Bucket string `json:"bucket"`
	// Path is the absolute directory in the sandbox; it must be absent
	// or empty.
	Path string `json:"path"`
	// Prefix selects the objects under a key prefix ("data/"); object
	// keys become paths relative to Path with the prefix removed.
	Prefix string `json:"prefix,omitempty"`
	// Endpoint is the S3 server: https://host[:port] or http://host[:port].
	Endpoint string `json:"endpoint"`
	// Region defaults to us-east-1.
	Region string `json:"region,omitempty"`
	// AccessKeyID and SecretAccessKey are the credentials; both empty
	// means anonymous access. sbxd keeps them in memory only.
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
	// PathStyle addresses the bucket as host/bucket (most self-hosted
	// servers need it).
	PathStyle bool `json:"pathStyle,omitempty"`
	// ReadOnly never writes to the bucket, and each sync reverts what
	// was changed in the directory since the last one.
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Validate checks the request before anything runs.
func (r *MountRequest) Validate() error {
	if r.Bucket == "" {
		return errors.New("bucket is required")
	}
	if err := ValidateArchiveDir(r.Path); err != nil {
		return fmt.Errorf("path: %v", err)
	}
	if r.Endpoint == "" {
		return errors.New("endpoint is required: the S3 server as https://host[:port]")
	}
	u, err := url.Parse(r.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q must be http://host[:port] or https://host[:port]", r.Endpoint)
	}
	if strings.HasPrefix(r.Prefix, "/") {
		return fmt.Errorf("prefix %q must not start with '/': keys are relative (\"data/\")", r.Prefix)
	}
	if (r.AccessKeyID == "") != (r.SecretAccessKey == "") {
		return errors.New("give both accessKeyId and secretAccessKey, or neither for anonymous access")
	}
	return nil
}

// Mount describes a bucket mount of a sandbox. Credentials are never
// returned.
type Mount struct {
	Path      string    `json:"path"`
	Bucket    string    `json:"bucket"`
	Prefix    string    `json:"prefix,omitempty"`
	Endpoint  string    `json:"endpoint"`
	ReadOnly  bool      `json:"readOnly"`
	MountedAt time.Time `json:"mountedAt"`
	// LastSyncAt is when the mount last matched the bucket.
	LastSyncAt time.Time `json:"lastSyncAt"`
	// Objects is how many objects the mount holds.
	Objects int `json:"objects"`
	// Skipped lists keys that cannot be files (such as "a//b" or keys
	// that are a prefix of other keys); at most 100.
	Skipped []string `json:"skipped,omitempty"`
}

// MountList is the body of GET /v1/sandboxes/{id}/mounts.
type MountList struct {
	Mounts []Mount `json:"mounts"`
}

// SyncResult is the response of POST /v1/sandboxes/{id}/mounts/sync.
type SyncResult struct {
	Mount Mount `json:"mount"`
	// Uploaded and Deleted count the objects written and removed in the
	// bucket (read-write mounts); Downloaded and Removed the files
	// written and removed in the sandbox.
	Uploaded   int `json:"uploaded"`
	Deleted    int `json:"deleted"`
	Downloaded int `json:"downloaded"`
	Removed    int `json:"removed"`
	// Reverted counts the paths of a read-only mount that were changed,
	// created or deleted in the sandbox since the last sync and were put
	// back to the bucket's state (they are also counted in Downloaded or
	// Removed).
	Reverted int `json:"reverted"`
	// Conflicts lists paths changed both in the sandbox and in the bucket
	// since the last sync; the sandbox's version won on read-write mounts,
	// the bucket's on read-only ones.
	Conflicts []string `json:"conflicts,omitempty"`
}
