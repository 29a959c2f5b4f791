package backup

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func pack(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unpack(archive []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// testData is half compressible text, half random bytes.
func testData(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		if i < n/2 {
			b[i] = "sandbox "[i%8]
		} else {
			b[i] = byte(rng.Uint32())
		}
	}
	return b
}

func TestArchiveRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 4 << 10, 3 << 20} {
		data := testData(n)
		got, err := unpack(pack(t, data))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: round trip changed the data", n)
		}
	}
}

func TestArchiveDetectsDamage(t *testing.T) {
	good := pack(t, testData(1<<20))
	tests := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped byte in data", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"flipped byte in checksum", func(b []byte) []byte { b[len(b)-20] ^= 1; return b }},
		{"truncated in data", func(b []byte) []byte { return b[:len(b)/3] }},
		{"truncated trailer", func(b []byte) []byte { return b[:len(b)-10] }},
		{"trailer cut off", func(b []byte) []byte { return b[:len(b)-trailerLen] }},
		{"garbage appended", func(b []byte) []byte { return append(b, "junk"...) }},
		{"empty", func([]byte) []byte { return nil }},
		{"not an archive", func([]byte) []byte { return []byte("plain text, not zstd at all, and long enough for a trailer....") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unpack(tc.damage(bytes.Clone(good)))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestArchiveVerifyAfterEarlyStop: a reader that stops before the end (a
// tar reader at the end-of-archive marker) learns of damage from Verify.
func TestArchiveVerifyAfterEarlyStop(t *testing.T) {
	good := pack(t, testData(1<<20))
	bad := bytes.Clone(good)
	bad[len(bad)-trailerLen+len(trailerMagic)] ^= 1 // the digest
	for _, tc := range []struct {
		archive []byte
		ok      bool
	}{{good, true}, {bad, false}} {
		r, err := NewReader(bytes.NewReader(tc.archive))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		err = r.Verify()
		if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, ErrCorrupt) {
			t.Errorf("Verify = %v, want ok=%v", err, tc.ok)
		}
		r.Close()
	}
}

// errReader fails after its data, as a broken network stream does.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

// TestArchiveSourceErrorIsNotCorruption: a failing source is reported as
// itself, not as a corrupt archive.
func TestArchiveSourceErrorIsNotCorruption(t *testing.T) {
	good := pack(t, testData(1<<20))
	boom := errors.New("connection reset")
	r, err := NewReader(&errReader{bytes.NewReader(good[:len(good)/2]), boom})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = io.ReadAll(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want the source's error", err)
	}
}
