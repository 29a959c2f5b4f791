package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// describe lists every entry under dir with what a snapshot must keep:
// type, mode, owner, size, mtime (not of directories' parents being
// filled), link target, content, device numbers, xattrs and link counts.
func describe(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d nlink=%d mtime=%d rdev=%d", rel, fi.Mode(), st.Uid, st.Gid, st.Nlink, fi.ModTime().UnixNano(), st.Rdev)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" size=%d data=%x", len(b), b[:min(len(b), 16)])
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		}
		if n, err := unix.Llistxattr(p, make([]byte, 4096)); err == nil && n > 0 {
			buf := make([]byte, n)
			unix.Llistxattr(p, buf)
			names := strings.Split(strings.TrimRight(string(buf), "\x00"), "\x00")
			slices.Sort(names)
			for _, x := range names {
				v := make([]byte, 256)
				m, _ := unix.Lgetxattr(p, x, v)
				line += fmt.Sprintf(" %s=%q", x, v[:max(m, 0)])
			}
		}
		out = append(out, line)
		return nil
	})
	return out
}

// makeUpper builds an upper directory with every kind of entry overlayfs
// leaves there, owned by ids of range r.
func makeUpper(t *testing.T, r idRange) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upper")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	root := int(r.host)
	must(os.MkdirAll(filepath.Join(dir, "workspace/app/empty"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "usr/share/doc"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "home/alice"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "workspace/app/main.py"), []byte("print('hi')\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "workspace/app/tool"), bytes.Repeat([]byte{0xde, 0xad}, 70000), 0o755))
	must(os.Chmod(filepath.Join(dir, "workspace/app/tool"), 0o4755|os.ModeSetuid))
	must(os.WriteFile(filepath.Join(dir, "home/alice/note"), []byte("mine"), 0o600))
	must(os.Symlink("main.py", filepath.Join(dir, "workspace/app/link")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "workspace/app/abs")))
	must(os.Link(filepath.Join(dir, "workspace/app/main.py"), filepath.Join(dir, "workspace/app/hard")))
	must(unix.Mknod(filepath.Join(dir, "usr/share/doc/gone"), unix.S_IFCHR|0o000, 0)) // whiteout
	must(unix.Mkfifo(filepath.Join(dir, "workspace/app/pipe"), 0o640))
	must(unix.Setxattr(filepath.Join(dir, "usr/share/doc"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(dir, "workspace/app/main.py"), "user.origin", []byte("test"), 0))
	for _, p := range []string{"", "workspace", "workspace/app", "workspace/app/empty", "workspace/app/main.py", "workspace/app/tool",
		"workspace/app/link", "workspace/app/abs", "workspace/app/pipe", "usr", "usr/share", "usr/share/doc", "usr/share/doc/gone"} {
		must(os.Lchown(filepath.Join(dir, p), root, root))
	}
	for _, p := range []string{"home/alice", "home/alice/note"} {
		must(os.Lchown(filepath.Join(dir, p), root+1000, root+1000))
	}
	must(os.Chmod(filepath.Join(dir, "workspace/app/tool"), 0o4755|os.ModeSetuid))
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	for _, p := range []string{"workspace/app/main.py", "workspace/app/empty", "home/alice"} {
		must(os.Chtimes(filepath.Join(dir, p), old, old))
	}
	must(unix.Lutimes(filepath.Join(dir, "workspace/app/link"), []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}))
	return dir
}

func requireRootFS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: owners, device nodes and trusted xattrs")
	}
}

func TestUpperRoundTrip(t *testing.T) {
	requireRootFS(t)
	from := idRange{host: 1 << 30, size: 1 << 16}
	src := makeUpper(t, from)
	var buf bytes.Buffer
	if _, err := writeUpper(context.Background(), &buf, src, &from); err != nil {
		t.Fatal(err)
	}
	want := describe(t, src)

	t.Run("same range", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "upper")
		os.Mkdir(dst, 0o755)
		if _, err := extractUpper(bytes.NewReader(buf.Bytes()), dst, &from); err != nil {
			t.Fatal(err)
		}
		if got := describe(t, dst); !slices.Equal(got, want) {
			t.Errorf("restored upper differs:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("other range", func(t *testing.T) {
		to := idRange{host: 1<<30 + 5<<16, size: 1 << 16}
		dst := filepath.Join(t.TempDir(), "upper")
		os.Mkdir(dst, 0o755)
		if _, err := extractUpper(bytes.NewReader(buf.Bytes()), dst, &to); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dst, "home/alice/note"), &st); err != nil || st.Uid != to.host+1000 {
			t.Errorf("owner of a shifted file: %d (%v), want %d", st.Uid, err, to.host+1000)
		}
		if err := syscall.Lstat(filepath.Join(dst, "workspace/app/tool"), &st); err != nil || st.Mode&unix.S_ISUID == 0 {
			t.Errorf("setuid bit lost: %o", st.Mode)
		}
	})
}

func TestExtractUpperRefuses(t *testing.T) {
	requireRootFS(t)
	mk := func(hdrs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", Format: tar.FormatPAX,
			PAXRecords: map[string]string{upperFormat: upperVersion, upperIDMap: "0:0"}})
		for _, h := range hdrs {
			tw.WriteHeader(h)
		}
		tw.Close()
		return buf.Bytes()
	}
	parent := t.TempDir()
	for _, tc := range []struct {
		name string
		tar  []byte
	}{
		{"device", mk(&tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3})},
		{"dot-dot", mk(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg})},
		{"absolute", mk(&tar.Header{Name: "/evil", Typeflag: tar.TypeReg})},
		{"through symlink", mk(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: parent},
			&tar.Header{Name: "l/evil", Typeflag: tar.TypeReg})},
		{"hard link out", mk(&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside"})},
		{"no format record", func() []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"x": "y"}})
			tw.Close()
			return buf.Bytes()
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "upper")
			os.Mkdir(dst, 0o755)
			if _, err := extractUpper(bytes.NewReader(tc.tar), dst, nil); err == nil {
				t.Fatal("extracted")
			}
			if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("wrote outside the upper directory")
			}
		})
	}
}

// BenchmarkUpperRoundTrip snapshots and restores 100 MiB in 5,200 files,
// the persistent-wake case of bench/.
func BenchmarkUpperRoundTrip(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	src := filepath.Join(b.TempDir(), "upper")
	os.MkdirAll(filepath.Join(src, "small"), 0o755)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for i := range 80 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), data, 0o644)
	}
	for i := range 5120 {
		os.WriteFile(filepath.Join(src, "small", fmt.Sprint(i)), data[:4096], 0o644)
	}
	var buf bytes.Buffer
	var wr, ex time.Duration
	for range b.N {
		buf.Reset()
		t0 := time.Now()
		if _, err := writeUpper(context.Background(), &buf, src, nil); err != nil {
			b.Fatal(err)
		}
		wr += time.Since(t0)
		dst := filepath.Join(b.TempDir(), "upper")
		os.Mkdir(dst, 0o755)
		t0 = time.Now()
		if _, err := extractUpper(bytes.NewReader(buf.Bytes()), dst, nil); err != nil {
			b.Fatal(err)
		}
		ex += time.Since(t0)
	}
	b.ReportMetric(float64(wr.Milliseconds())/float64(b.N), "snapshot-ms")
	b.ReportMetric(float64(ex.Milliseconds())/float64(b.N), "restore-ms")
}
