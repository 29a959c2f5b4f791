// Package blobtest is the conformance suite of blob.Store: the behaviour
// written on the interface, checked the way a caller sees it. Every store's
// tests call Run.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// LargeSize is the size of the suite's large objects: several MiB, and more
// than two parts of the smallest S3 part size (5 MiB), so a streaming S3
// store goes through a multipart upload.
const LargeSize = 13<<20 + 12345

// opTimeout bounds each subtest.
const opTimeout = 2 * time.Minute

// Run runs the conformance suite. newStore returns an empty store and
// registers its own cleanup on t; it is called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	s := &suite{newStore: newStore}
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("Overwrite", s.testOverwrite)
	t.Run("Metadata", s.testMetadata)
	t.Run("Stat", s.testStat)
	t.Run("List", s.testList)
	t.Run("ListStopEarly", s.testListStopEarly)
	t.Run("Delete", s.testDelete)
	t.Run("NotFound", s.testNotFound)
	t.Run("InvalidKeys", s.testInvalidKeys)
	t.Run("InvalidMetadata", s.testInvalidMetadata)
	t.Run("FailingReader", s.testFailingReader)
	t.Run("ConcurrentPuts", s.testConcurrentPuts)
	t.Run("ReadWhileReplaced", s.testReadWhileReplaced)
	t.Run("KeyPrefixOfKey", s.testKeyPrefixOfKey)
	t.Run("ContextCancel", s.testContextCancel)
}

type suite struct {
	newStore func(t *testing.T) blob.Store
}

func (s *suite) setup(t *testing.T) (context.Context, blob.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx, s.newStore(t)
}

// opaque hides every method but Read, so a store cannot learn the length
// of the stream by type assertion: every Put in the suite is of unknown
// length, as a streamed archive is.
type opaque struct{ r io.Reader }

func (o opaque) Read(p []byte) (int, error) { return o.r.Read(p) }

// randReader returns n bytes of deterministic pseudo-random data.
func randReader(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func digest(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var d [32]byte
	h.Sum(d[:0])
	return d, n, err
}

// failAfter yields n bytes of data then fails with err.
type failAfter struct {
	r   io.Reader
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

var errSource = errors.New("blobtest: source failed on purpose")

// put stores data under key and fails the test on error.
func put(ctx context.Context, t *testing.T, st blob.Store, key string, data []byte, meta map[string]string) blob.Info {
	t.Helper()
	info, err := st.Put(ctx, key, opaque{bytes.NewReader(data)}, blob.PutOptions{Metadata: meta})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Fatalf("Put(%q) = key %q size %d, want key %q size %d", key, info.Key, info.Size, key, len(data))
	}
	return info
}

// get reads the whole object under key and fails the test on error.
func get(ctx context.Context, t *testing.T, st blob.Store, key string) ([]byte, blob.Info) {
	t.Helper()
	rc, info, err := st.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Fatalf("Get(%q) info = key %q size %d, read %d bytes", key, info.Key, info.Size, len(data))
	}
	return data, info
}

func listKeys(ctx context.Context, t *testing.T, st blob.Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	for info, err := range st.List(ctx, prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

func wantNotFound(t *testing.T, op string, err error) {
	t.Helper()
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("%s: err = %v, want one wrapping blob.ErrNotFound", op, err)
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	ctx, st := s.setup(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	tests := []struct {
		name string
		key  string
		size int64
		src  func() io.Reader
	}{
		{"empty", "rt/empty", 0, func() io.Reader { return opaque{strings.NewReader("")} }},
		{"small", "rt/small.txt", 5, func() io.Reader { return opaque{strings.NewReader("hello")} }},
		{"one byte reads", "rt/one-byte", 4096, func() io.Reader { return iotest.OneByteReader(randReader(1, 4096)) }},
		{"data with EOF", "rt/data-eof", 1000, func() io.Reader { return iotest.DataErrReader(randReader(2, 1000)) }},
		{"all byte values", "rt/all-bytes", 256, func() io.Reader { return opaque{bytes.NewReader(all)} }},
		{"large random", "rt/deep/er/large.bin", LargeSize, func() io.Reader { return opaque{randReader(3, LargeSize)} }},
		{"unicode key", "rt/ünï cødé/ключ 🗝", 3, func() io.Reader { return opaque{strings.NewReader("abc")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, _, _ := digest(tt.src())
			info, err := st.Put(ctx, tt.key, tt.src(), blob.PutOptions{})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.Key != tt.key || info.Size != tt.size {
				t.Errorf("Put info = key %q size %d, want %q %d", info.Key, info.Size, tt.key, tt.size)
			}
			rc, ginfo, err := st.Get(ctx, tt.key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer rc.Close()
			got, n, err := digest(rc)
			if err != nil {
				t.Fatalf("reading Get stream: %v", err)
			}
			if n != tt.size || got != want {
				t.Errorf("Get returned %d bytes sha256 %x, want %d bytes %x", n, got, tt.size, want)
			}
			if ginfo.Size != tt.size || ginfo.Key != tt.key {
				t.Errorf("Get info = key %q size %d, want %q %d", ginfo.Key, ginfo.Size, tt.key, tt.size)
			}
			if ginfo.Metadata == nil {
				t.Errorf("Get info Metadata is nil, want an empty map")
			}
		})
	}
}

func (s *suite) testOverwrite(t *testing.T) {
	ctx, st := s.setup(t)
	put(ctx, t, st, "ow/k", bytes.Repeat([]byte("old"), 1000), map[string]string{"gen": "1", "only-old": "x"})
	put(ctx, t, st, "ow/k", []byte("new"), map[string]string{"gen": "2"})
	data, info := get(ctx, t, st, "ow/k")
	if string(data) != "new" {
		t.Errorf("after overwrite Get = %q, want %q", data, "new")
	}
	if want := map[string]string{"gen": "2"}; !mapsEqual(info.Metadata, want) {
		t.Errorf("after overwrite metadata = %v, want %v (old entries must not survive)", info.Metadata, want)
	}
	if keys := listKeys(ctx, t, st, "ow/"); !slices.Equal(keys, []string{"ow/k"}) {
		t.Errorf("List after overwrite = %q, want one key", keys)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (s *suite) testMetadata(t *testing.T) {
	ctx, st := s.setup(t)
	tests := []struct {
		name string
		meta map[string]string
	}{
		{"none", nil},
		{"empty map", map[string]string{}},
		{"simple", map[string]string{"sandbox": "sb-1", "created-at": "2026-01-02T03:04:05Z"}},
		{"awkward values", map[string]string{
			"empty":    "",
			"spaces":   "  leading and trailing  ",
			"percent":  "100% %41 %zz %",
			"unicode":  "/home/üser/проект/🗂",
			"controls": "tab\tnew\nline\r\x00nul",
			"quotes":   `"a" 'b' <c> & \d`,
		}},
		{"digits and dashes", map[string]string{"0": "zero", "a-b-c": "1", "x9-": "y"}},
		{"at size limit", map[string]string{"big": strings.Repeat("v", blob.MaxMetadataSize-len("big"))}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("meta/%d", i)
			want := tt.meta
			if want == nil {
				want = map[string]string{}
			}
			info := put(ctx, t, st, key, []byte("payload"), tt.meta)
			if !mapsEqual(info.Metadata, want) {
				t.Errorf("Put info metadata = %q, want %q", info.Metadata, want)
			}
			_, ginfo := get(ctx, t, st, key)
			if !mapsEqual(ginfo.Metadata, want) || ginfo.Metadata == nil {
				t.Errorf("Get metadata = %q, want %q", ginfo.Metadata, want)
			}
			sinfo, err := st.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if !mapsEqual(sinfo.Metadata, want) || sinfo.Metadata == nil {
				t.Errorf("Stat metadata = %q, want %q", sinfo.Metadata, want)
			}
			n := 0
			for linfo, err := range st.List(ctx, key) {
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				if linfo.Key != key {
					continue
				}
				n++
				if !mapsEqual(linfo.Metadata, want) || linfo.Metadata == nil {
					t.Errorf("List metadata = %q, want %q", linfo.Metadata, want)
				}
			}
			if n != 1 {
				t.Errorf("List(%q) yielded the key %d times, want 1", key, n)
			}
		})
	}
}

func (s *suite) testStat(t *testing.T) {
	ctx, st := s.setup(t)
	// Some servers keep whole seconds; allow for that and a little skew.
	before := time.Now().Add(-2 * time.Second)
	put(ctx, t, st, "stat/obj", bytes.Repeat([]byte{7}, 12345), map[string]string{"k": "v"})
	after := time.Now().Add(2 * time.Second)
	info, err := st.Stat(ctx, "stat/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "stat/obj" || info.Size != 12345 || info.Metadata["k"] != "v" {
		t.Errorf("Stat = %+v, want key stat/obj, size 12345, metadata k=v", info)
	}
	if info.ModTime.Before(before) || info.ModTime.After(after) {
		t.Errorf("Stat ModTime = %v, want between %v and %v", info.ModTime, before, after)
	}
	for linfo, err := range st.List(ctx, "stat/") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if linfo.Size != info.Size || !linfo.ModTime.Equal(info.ModTime) {
			t.Errorf("List info = size %d modtime %v, Stat said %d %v", linfo.Size, linfo.ModTime, info.Size, info.ModTime)
		}
	}
}

func (s *suite) testList(t *testing.T) {
	ctx, st := s.setup(t)
	// Byte order, not directory order: '-' and '.' sort before '/', '0'
	// after it, and multi-byte UTF-8 after ASCII.
	keys := []string{
		"a-c", "a.x", "a/b/c", "a/b/d", "a/b/d2", "a/bc", "a/c/e", "a0", "ab", "b", "z/y/x/w/v", "ä/x",
	}
	for i, k := range slices.Backward(keys) { // insertion order must not matter
		put(ctx, t, st, k, bytes.Repeat([]byte{'x'}, i), map[string]string{"i": fmt.Sprint(i)})
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{"a", keys[:9]},
		{"a/", []string{"a/b/c", "a/b/d", "a/b/d2", "a/bc", "a/c/e"}},
		{"a/b", []string{"a/b/c", "a/b/d", "a/b/d2", "a/bc"}},
		{"a/b/", []string{"a/b/c", "a/b/d", "a/b/d2"}},
		{"a/b/d", []string{"a/b/d", "a/b/d2"}},
		{"a/b/d2", []string{"a/b/d2"}},
		{"ab", []string{"ab"}},
		{"ab/", nil},
		{"a-", []string{"a-c"}},
		{"z/y/", []string{"z/y/x/w/v"}},
		{"ä", []string{"ä/x"}},
		{"nothing/here/", nil},
		{"zz", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("prefix=%q", tt.prefix), func(t *testing.T) {
			got := []string{}
			for info, err := range st.List(ctx, tt.prefix) {
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				got = append(got, info.Key)
				i := slices.Index(keys, info.Key)
				if i < 0 {
					continue
				}
				if info.Size != int64(i) || info.Metadata["i"] != fmt.Sprint(i) {
					t.Errorf("List info of %q = size %d metadata %q, want size %d i=%d", info.Key, info.Size, info.Metadata, i, i)
				}
			}
			if want := append([]string{}, tt.want...); !slices.Equal(got, want) {
				t.Errorf("List(%q) = %q, want %q", tt.prefix, got, want)
			}
		})
	}
}

func (s *suite) testListStopEarly(t *testing.T) {
	ctx, st := s.setup(t)
	for i := range 5 {
		put(ctx, t, st, fmt.Sprintf("early/%d", i), []byte("x"), nil)
	}
	n := 0
	for _, err := range st.List(ctx, "early/") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("saw %d entries before break, want 2", n)
	}
	// The store must be fully usable after an abandoned listing.
	if keys := listKeys(ctx, t, st, "early/"); len(keys) != 5 {
		t.Errorf("List after an early stop = %q, want 5 keys", keys)
	}
}

func (s *suite) testDelete(t *testing.T) {
	ctx, st := s.setup(t)
	put(ctx, t, st, "del/a/b", []byte("1"), nil)
	put(ctx, t, st, "del/a/c", []byte("2"), nil)
	for i := range 2 { // the second round checks idempotence
		if err := st.Delete(ctx, "del/a/b"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := st.Delete(ctx, "del/never/existed"); err != nil {
		t.Errorf("Delete of a never-existing key: %v, want nil", err)
	}
	_, _, err := st.Get(ctx, "del/a/b")
	wantNotFound(t, "Get after Delete", err)
	if keys := listKeys(ctx, t, st, "del/"); !slices.Equal(keys, []string{"del/a/c"}) {
		t.Errorf("List after Delete = %q, want [del/a/c]", keys)
	}
	if err := st.Delete(ctx, "del/a/c"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if keys := listKeys(ctx, t, st, ""); len(keys) != 0 {
		t.Errorf("List of an emptied store = %q, want nothing", keys)
	}
	// The key is reusable.
	put(ctx, t, st, "del/a/b", []byte("again"), nil)
	if data, _ := get(ctx, t, st, "del/a/b"); string(data) != "again" {
		t.Errorf("Get after re-put = %q", data)
	}
}

func (s *suite) testNotFound(t *testing.T) {
	ctx, st := s.setup(t)
	put(ctx, t, st, "nf/dir/obj", []byte("x"), nil)
	for _, key := range []string{"nf/missing", "nf/dir", "nf", "nf/dir/obj/below", "nf/dir/ob"} {
		rc, _, err := st.Get(ctx, key)
		if err == nil {
			rc.Close()
		}
		wantNotFound(t, fmt.Sprintf("Get(%q)", key), err)
		_, err = st.Stat(ctx, key)
		wantNotFound(t, fmt.Sprintf("Stat(%q)", key), err)
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Stat(%q) error does not wrap errdefs.ErrNotFound: %v", key, err)
		}
		if !strings.Contains(err.Error(), key) {
			t.Errorf("Stat(%q) error %q does not name the key", key, err)
		}
	}
}

// unreadable fails the test if anything reads it.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Errorf("Put read the source of an invalid request")
	return 0, io.EOF
}

func (s *suite) testInvalidKeys(t *testing.T) {
	ctx, st := s.setup(t)
	tests := []struct{ name, key string }{
		{"empty", ""},
		{"leading slash", "/a"},
		{"trailing slash", "a/"},
		{"empty segment", "a//b"},
		{"dot dot", ".."},
		{"dot dot segment", "a/../b"},
		{"leading dot dot", "../a"},
		{"dot segment", "a/./b"},
		{"dot", "."},
		{"NUL", "a\x00b"},
		{"newline", "a\nb"},
		{"DEL", "a\x7fb"},
		{"invalid UTF-8", "a/\xff\xfe"},
		{"too long", strings.Repeat("k/", blob.MaxKeyLen/2) + "x"},
		{"segment too long", "a/" + strings.Repeat("s", blob.MaxSegmentLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, blob.ErrInvalidKey) || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("%s(%q): err = %v, want one wrapping blob.ErrInvalidKey and errdefs.ErrInvalidArgument", op, tt.key, err)
				}
			}
			_, err := st.Put(ctx, tt.key, unreadable{t}, blob.PutOptions{})
			check("Put", err)
			rc, _, err := st.Get(ctx, tt.key)
			if err == nil {
				rc.Close()
			}
			check("Get", err)
			_, err = st.Stat(ctx, tt.key)
			check("Stat", err)
			check("Delete", st.Delete(ctx, tt.key))
		})
	}
	// Boundaries that are valid.
	for _, key := range []string{
		strings.Repeat("k/", blob.MaxKeyLen/2-1) + "xy",
		"a/" + strings.Repeat("s", blob.MaxSegmentLen),
		"...", "a/..b/c..", ".hidden/.x",
	} {
		if len(key) > blob.MaxKeyLen {
			t.Fatalf("test key is %d bytes", len(key))
		}
		put(ctx, t, st, key, []byte("ok"), nil)
		if data, _ := get(ctx, t, st, key); string(data) != "ok" {
			t.Errorf("Get(%.40q...) = %q", key, data)
		}
	}
	for _, prefix := range []string{"/a", "a//", "../", "a/./", "a\x00"} {
		n := 0
		for _, err := range st.List(ctx, prefix) {
			n++
			if !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("List(%q) yielded err = %v, want blob.ErrInvalidKey", prefix, err)
			}
		}
		if n != 1 {
			t.Errorf("List(%q) yielded %d pairs, want just the error", prefix, n)
		}
	}
}

func (s *suite) testInvalidMetadata(t *testing.T) {
	ctx, st := s.setup(t)
	tests := []struct {
		name string
		meta map[string]string
	}{
		{"upper-case key", map[string]string{"Key": "v"}},
		{"underscore", map[string]string{"a_b": "v"}},
		{"empty key", map[string]string{"": "v"}},
		{"leading dash", map[string]string{"-a": "v"}},
		{"space in key", map[string]string{"a b": "v"}},
		{"invalid UTF-8 value", map[string]string{"a": "\xff"}},
		{"too big", map[string]string{"big": strings.Repeat("v", blob.MaxMetadataSize)}},
		{"too big escaped", map[string]string{"big": strings.Repeat(" ", blob.MaxMetadataSize/2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.Put(ctx, "im/key", unreadable{t}, blob.PutOptions{Metadata: tt.meta})
			if !errors.Is(err, blob.ErrInvalidMetadata) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("Put: err = %v, want one wrapping blob.ErrInvalidMetadata", err)
			}
			_, err = st.Stat(ctx, "im/key")
			wantNotFound(t, "Stat after refused Put", err)
		})
	}
}

func (s *suite) testFailingReader(t *testing.T) {
	tests := []struct {
		name string
		size int64
	}{
		{"at once", 0},
		{"small", 100},
		{"large", LargeSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, st := s.setup(t)
			old := []byte("the old object, which must survive")
			put(ctx, t, st, "fail/existing", old, map[string]string{"v": "old"})

			for _, key := range []string{"fail/existing", "fail/fresh"} {
				src := &failAfter{randReader(9, tt.size), errSource}
				_, err := st.Put(ctx, key, src, blob.PutOptions{Metadata: map[string]string{"v": "new"}})
				if !errors.Is(err, errSource) {
					t.Fatalf("Put(%q) with a failing source: err = %v, want one wrapping the source's error", key, err)
				}
				if !strings.Contains(err.Error(), key) {
					t.Errorf("Put error %q does not name the key", err)
				}
			}
			data, info := get(ctx, t, st, "fail/existing")
			if !bytes.Equal(data, old) || info.Metadata["v"] != "old" {
				t.Errorf("existing object after a failed overwrite = %q (metadata %q), want it intact", data, info.Metadata)
			}
			_, err := st.Stat(ctx, "fail/fresh")
			wantNotFound(t, "Stat of a key whose only Put failed", err)
			if keys := listKeys(ctx, t, st, ""); !slices.Equal(keys, []string{"fail/existing"}) {
				t.Errorf("List after failed puts = %q, want only fail/existing", keys)
			}
		})
	}
}

func (s *suite) testConcurrentPuts(t *testing.T) {
	ctx, st := s.setup(t)
	const n = 12
	const size = 300 << 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.Put(ctx, fmt.Sprintf("conc/%02d/obj", i), opaque{randReader(uint64(100+i), size)}, blob.PutOptions{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put #%d: %v", i, err)
		}
	}
	for i := range n {
		rc, _, err := st.Get(ctx, fmt.Sprintf("conc/%02d/obj", i))
		if err != nil {
			t.Fatalf("Get #%d: %v", i, err)
		}
		got, _, err := digest(rc)
		rc.Close()
		want, _, _ := digest(randReader(uint64(100+i), size))
		if err != nil || got != want {
			t.Errorf("object #%d does not hold what was put (err %v)", i, err)
		}
	}
	if keys := listKeys(ctx, t, st, "conc/"); len(keys) != n {
		t.Errorf("List = %d keys, want %d", len(keys), n)
	}

	// Racing writers of one key: the survivor is one whole object.
	wants := map[[32]byte]bool{}
	for i := range n {
		d, _, _ := digest(randReader(uint64(200+i), size+int64(i)))
		wants[d] = true
		wg.Go(func() {
			_, errs[i] = st.Put(ctx, "conc/same", opaque{randReader(uint64(200+i), size+int64(i))}, blob.PutOptions{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("racing Put #%d: %v", i, err)
		}
	}
	rc, info, err := st.Get(ctx, "conc/same")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	got, size2, err := digest(rc)
	if err != nil || !wants[got] || size2 != info.Size {
		t.Errorf("after racing puts the object (%d bytes, err %v) is none of the ones put", size2, err)
	}
}

func (s *suite) testReadWhileReplaced(t *testing.T) {
	ctx, st := s.setup(t)
	const size = 1 << 20
	old := bytes.Repeat([]byte{'o'}, size)
	put(ctx, t, st, "rwr/k", old, nil)
	for _, change := range []string{"overwrite", "delete"} {
		t.Run(change, func(t *testing.T) {
			put(ctx, t, st, "rwr/k", old, nil)
			rc, _, err := st.Get(ctx, "rwr/k")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer rc.Close()
			head := make([]byte, 10)
			if _, err := io.ReadFull(rc, head); err != nil {
				t.Fatalf("read: %v", err)
			}
			if change == "overwrite" {
				put(ctx, t, st, "rwr/k", bytes.Repeat([]byte{'n'}, size), nil)
			} else if err := st.Delete(ctx, "rwr/k"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			rest, err := io.ReadAll(rc)
			if err != nil {
				return // allowed: the store may cut the reader off
			}
			if got := append(head, rest...); !bytes.Equal(got, old) {
				t.Errorf("reader open across a %s returned %d bytes that are not the old object", change, len(got))
			}
		})
	}
}

func (s *suite) testKeyPrefixOfKey(t *testing.T) {
	// "a" and "a/b" may be refused as a pair (see blob.ErrConflict); what
	// must hold is that a refusal says so and damages nothing.
	ctx, st := s.setup(t)
	for _, pair := range [][2]string{{"kp/x/y", "kp/x"}, {"kp/p", "kp/p/q"}} {
		put(ctx, t, st, pair[0], []byte("first"), nil)
		_, err := st.Put(ctx, pair[1], opaque{strings.NewReader("second")}, blob.PutOptions{})
		if err != nil && !errors.Is(err, blob.ErrConflict) {
			t.Errorf("Put(%q) beside %q: err = %v, want nil or one wrapping blob.ErrConflict", pair[1], pair[0], err)
		}
		if data, _ := get(ctx, t, st, pair[0]); string(data) != "first" {
			t.Errorf("Get(%q) = %q after Put(%q)", pair[0], data, pair[1])
		}
		if err == nil {
			if data, _ := get(ctx, t, st, pair[1]); string(data) != "second" {
				t.Errorf("Get(%q) = %q", pair[1], data)
			}
		} else {
			_, err := st.Stat(ctx, pair[1])
			wantNotFound(t, "Stat of a refused key", err)
		}
	}
}

// cancelAfter yields data forever and cancels after n bytes, like a
// source whose consumer gave up mid-stream.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

func (s *suite) testContextCancel(t *testing.T) {
	ctx, st := s.setup(t)
	put(ctx, t, st, "cc/existing", []byte("old"), nil)
	put(ctx, t, st, "cc/big", bytes.Repeat([]byte{'b'}, 4<<20), nil)

	done, cancel := context.WithCancel(ctx)
	cancel()
	wantCanceled := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want one wrapping context.Canceled", op, err)
		}
	}
	_, err := st.Put(done, "cc/new", opaque{strings.NewReader("x")}, blob.PutOptions{})
	wantCanceled("Put", err)
	rc, _, err := st.Get(done, "cc/existing")
	if err == nil {
		rc.Close()
	}
	wantCanceled("Get", err)
	_, err = st.Stat(done, "cc/existing")
	wantCanceled("Stat", err)
	for _, err := range st.List(done, "cc/") {
		wantCanceled("List", err)
	}

	for _, size := range []int64{10, LargeSize} {
		for _, key := range []string{"cc/existing", "cc/new"} {
			mid, cancel := context.WithCancel(ctx)
			src := &cancelAfter{r: randReader(5, 1<<40), n: size, cancel: cancel}
			_, err := st.Put(mid, key, src, blob.PutOptions{})
			cancel()
			wantCanceled(fmt.Sprintf("Put(%q) cancelled after %d bytes", key, size), err)
		}
	}
	if data, _ := get(ctx, t, st, "cc/existing"); string(data) != "old" {
		t.Errorf("object after cancelled overwrites = %q, want %q", data, "old")
	}
	_, err = st.Stat(ctx, "cc/new")
	wantNotFound(t, "Stat after cancelled puts", err)

	// A reader stops once its context is done.
	mid, cancelRead := context.WithCancel(ctx)
	rc, _, err = st.Get(mid, "cc/big")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatalf("read: %v", err)
	}
	cancelRead()
	_, err = io.Copy(io.Discard, rc)
	wantCanceled("reading a Get stream", err)
}
