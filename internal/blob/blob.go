// Package blob defines the object store that holds sbx's bulk data (backups,
// persisted sandbox filesystems): a flat namespace of keys, each naming an
// immutable byte stream with a little metadata.
//
// Implementations live in sub-packages (blob/local, the embedded default on
// a local directory, and blob/s3 for S3-compatible servers). Every one must
// pass the conformance suite in blob/blobtest, which is the executable form
// of the contract written on Store.
package blob

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// ErrNotFound is returned (wrapped) by Get and Stat when no object has the
// key. It is errdefs.ErrNotFound itself, so the HTTP layer maps it to 404
// without knowing about this package.
var ErrNotFound = errdefs.ErrNotFound

// ErrInvalidKey and ErrInvalidMetadata are returned (wrapped) for keys,
// prefixes and metadata that break the rules of ValidateKey,
// ValidatePrefix and ValidateMetadata. The errors returned also match
// errdefs.ErrInvalidArgument, so the HTTP layer maps them to 400.
var (
	ErrInvalidKey      = errors.New("invalid blob key")
	ErrInvalidMetadata = errors.New("invalid blob metadata")
)

// ErrConflict is returned (wrapped) by Put when the store cannot hold the
// key beside an existing one. Stores that map keys to file paths (the local
// store, S3 servers with a filesystem backend) cannot hold both "a" and
// "a/b", since "a" would have to be a file and a directory at once; S3
// proper can. Callers must not create such pairs. It is
// errdefs.ErrConflict, so the HTTP layer maps it to 409.
var ErrConflict = errdefs.ErrConflict

// Info describes a stored object.
type Info struct {
	// Key is the object's key.
	Key string
	// Size is the length of the object in bytes.
	Size int64
	// ModTime is when the object was last written, as the store's clock
	// saw it (second precision on some S3 servers).
	ModTime time.Time
	// Metadata is the map given to Put; never nil, empty if none was.
	Metadata map[string]string
}

// PutOptions are the optional arguments of Put.
type PutOptions struct {
	// Metadata is stored with the object and returned by Get, Stat and
	// List. It must pass ValidateMetadata.
	Metadata map[string]string
}

// Sweeper is implemented by stores where a Put that failed can leave
// invisible leftovers behind: an S3 multipart upload whose abort never
// reached a server that had died. Such parts take space on the server but
// are never visible to Get, Stat or List.
type Sweeper interface {
	// Sweep removes the leftovers of Puts under prefix that began before
	// olderThan and reports how many it removed. A Put still running
	// that began before olderThan may fail.
	Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error)
}

// Store is an object store. Implementations are safe for concurrent use.
//
// Keys are '/'-separated paths that pass ValidateKey; a key names at most
// one object. Objects are written whole and never modified in place: a
// reader of a key sees either the complete old object or the complete new
// one, never a mix or a prefix.
//
// Every method refuses an invalid key with an error wrapping ErrInvalidKey
// before doing any I/O, and returns an error wrapping ctx.Err() when ctx is
// done before the operation completes. Errors name the operation and key.
type Store interface {
	// Put stores the bytes of r, read until io.EOF, under key, replacing
	// any object already there, and returns the new object's Info. The
	// length need not be known in advance; stores hold only a bounded
	// amount of it in memory.
	//
	// Put is atomic: the object becomes visible to Get, Stat and List only
	// once it is complete and durable. If r returns an error other than
	// io.EOF, ctx is done, or the store fails, Put returns an error
	// (wrapping r's error or ctx.Err() when that was the cause) and leaves
	// no trace: no new or partial object is visible, and an object already
	// under key stays intact. Put reads r from one goroutine and does not
	// close it; a reader that blocks must itself honour ctx.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error)

	// Get opens the object under key for reading. The caller must close
	// the returned reader. It yields exactly the bytes that were put, even
	// if the key is overwritten or deleted while it is being read (S3
	// stores may then fail the read rather than mix versions), and fails
	// with ctx's error once ctx is done. A missing key is an error
	// wrapping ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)

	// Stat returns the Info of the object under key, or an error wrapping
	// ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)

	// List yields the objects whose keys start with prefix (a plain string
	// prefix: "a/" matches "a/b" but not "ab"; "a" matches both), in
	// ascending byte order of key, each key once. An empty prefix lists
	// everything. The prefix must pass ValidatePrefix. An error is yielded
	// once, as the last pair. Objects put or deleted while listing may or
	// may not appear. Stopping the iteration early releases everything.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]

	// Delete removes the object under key. Deleting a missing key is not
	// an error, so Delete is idempotent. Readers that already opened the
	// object may finish reading it.
	Delete(ctx context.Context, key string) error
}
