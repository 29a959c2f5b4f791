package fstree

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGlobs(t *testing.T) {
	tests := []struct {
		pats []string
		rel  string
		want bool
	}{
		{[]string{"*.log"}, "a.log", true},
		{[]string{"*.log"}, "deep/dir/a.log", true},
		{[]string{"*.log"}, "a.log.txt", false},
		{[]string{"node_modules"}, "node_modules", true},
		{[]string{"node_modules"}, "web/node_modules/react/index.js", true},
		{[]string{"node_modules"}, "web/node_modules_x/a", false},
		{[]string{"build/*.o"}, "build/a.o", true},
		{[]string{"build/*.o"}, "src/build/a.o", false},
		{[]string{"/docs"}, "docs/index.md", true},
		{[]string{"/docs"}, "src/docs", false},
		{[]string{"src/**/*.go"}, "src/main.go", true},
		{[]string{"src/**/*.go"}, "src/a/b/c.go", true},
		{[]string{"src/**/*.go"}, "lib/a.go", false},
		{[]string{"**/test"}, "a/b/test/x", true},
		{[]string{"a", "*.tmp"}, "b/c.tmp", true},
		{nil, "anything", false},
		{[]string{"*"}, ".", false},
	}
	for _, tc := range tests {
		g, err := ParseGlobs(tc.pats)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Match(tc.rel); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.pats, tc.rel, got, tc.want)
		}
	}
	if _, err := ParseGlobs([]string{"[a-"}); err == nil || !strings.Contains(err.Error(), `"[a-"`) {
		t.Errorf("malformed glob: %v", err)
	}
}

// buildTree makes a tree exercising every entry type Write carries.
func buildTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "src/pkg"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "empty"), 0o700))
	must(os.MkdirAll(filepath.Join(dir, "node_modules/x"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "src/main.go"), []byte("package main\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "src/pkg/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "node_modules/x/i.js"), []byte("x"), 0o644))
	all := make([]byte, 256*4)
	for i := range all {
		all[i] = byte(i)
	}
	must(os.WriteFile(filepath.Join(dir, "bin.dat"), all, 0o600))
	must(os.Symlink("src/main.go", filepath.Join(dir, "link")))
	must(os.Link(filepath.Join(dir, "bin.dat"), filepath.Join(dir, "src/hard.dat")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "src/main.go"), old, old))
	must(os.Chtimes(filepath.Join(dir, "empty"), old, old))
	return dir
}

func TestWriteExtractRoundTrip(t *testing.T) {
	src := buildTree(t)
	var buf bytes.Buffer
	ex, _ := ParseGlobs([]string{"node_modules"})
	st, err := Write(&buf, src, WriteOptions{Exclude: ex})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 || st.Hardlinks != 1 || st.Symlinks != 1 || st.Dirs != 3 || st.Skipped != 1 {
		t.Errorf("write stats %+v", st)
	}

	// Names are relative, directories end in '/', the root is absent.
	var names []string
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{"bin.dat", "empty/", "link", "src/", "src/hard.dat", "src/main.go", "src/pkg/", "src/pkg/run.sh"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}

	// Archiving through a symlink to the tree gives the same archive.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(src, link)
	var viaLink bytes.Buffer
	if _, err := Write(&viaLink, link, WriteOptions{Exclude: ex}); err != nil || !bytes.Equal(viaLink.Bytes(), buf.Bytes()) {
		t.Errorf("archive through a symlink differs (%d vs %d bytes): %v", viaLink.Len(), buf.Len(), err)
	}

	dst := t.TempDir()
	xst, err := Extract(bytes.NewReader(buf.Bytes()), dst, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if xst.Files != 3 || xst.Hardlinks != 1 || xst.Symlinks != 1 || xst.Dirs != 3 || xst.Bytes != 13+18+1024 {
		t.Errorf("extract stats %+v", xst)
	}
	for _, f := range []string{"bin.dat", "src/main.go", "src/pkg/run.sh", "src/hard.dat"} {
		a, _ := os.ReadFile(filepath.Join(src, f))
		b, err := os.ReadFile(filepath.Join(dst, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs after round trip: %v", f, err)
		}
		sa, _ := os.Stat(filepath.Join(src, f))
		sb, _ := os.Stat(filepath.Join(dst, f))
		if sa.Mode() != sb.Mode() {
			t.Errorf("%s mode %v, want %v", f, sb.Mode(), sa.Mode())
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "src/main.go" {
		t.Errorf("symlink %q %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dst, "bin.dat"))
	b, _ := os.Stat(filepath.Join(dst, "src/hard.dat"))
	if !os.SameFile(a, b) {
		t.Error("hard link came back as two files")
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || fi.Mode().Perm() != 0o700 || !fi.ModTime().Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("empty dir: %v %v", fi, err)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "src/main.go")); !fi.ModTime().Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("mtime %v not kept", fi.ModTime())
	}
	if _, err := os.Stat(filepath.Join(dst, "node_modules")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("excluded directory was archived")
	}
	if _, err := os.Lstat(filepath.Join(dst, "fifo")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("fifo was archived")
	}
	leftovers(t, dst)
}

// leftovers fails if temporary files were left under dir.
func leftovers(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && strings.HasPrefix(d.Name(), ".sbx-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func mkTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestExtractRefusesEscapes(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		setup   func(t *testing.T, parent, dst string)
	}{
		{"absolute name", []entry{{name: "/etc/evil", typ: tar.TypeReg, body: "x"}}, nil},
		{"dot-dot", []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}, nil},
		{"dot-dot inside", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}, nil},
		{"absolute symlink", []entry{{name: "l", link: "/etc", typ: tar.TypeSymlink}}, nil},
		{"escaping symlink", []entry{{name: "a/l", link: "../../x", typ: tar.TypeSymlink}}, nil},
		{"symlink then write through it", []entry{
			{name: "l", link: ".", typ: tar.TypeSymlink},
			{name: "m", link: "l/..", typ: tar.TypeSymlink},
			{name: "m/evil", typ: tar.TypeReg, body: "x"},
		}, nil},
		{"symlink chain", []entry{
			{name: "m", link: "l/..", typ: tar.TypeSymlink},
			{name: "l", link: ".", typ: tar.TypeSymlink},
		}, nil},
		{"hard link out", []entry{{name: "h", link: "../outside", typ: tar.TypeLink}}, nil},
		{"hard link absolute", []entry{{name: "h", link: "/etc/passwd", typ: tar.TypeLink}}, nil},
		{"char device", []entry{{name: "null", typ: tar.TypeChar}}, nil},
		{"block device", []entry{{name: "sda", typ: tar.TypeBlock}}, nil},
		{"fifo", []entry{{name: "p", typ: tar.TypeFifo}}, nil},
		{"through existing symlink", []entry{{name: "out/evil", typ: tar.TypeReg, body: "x"}},
			func(t *testing.T, parent, dst string) {
				if err := os.Symlink(parent, filepath.Join(dst, "out")); err != nil {
					t.Fatal(err)
				}
			}},
		{"through existing relative symlink", []entry{{name: "up/evil", typ: tar.TypeReg, body: "x"}},
			func(t *testing.T, parent, dst string) {
				if err := os.Symlink("..", filepath.Join(dst, "up")); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, parent, dst)
			}
			_, err := Extract(bytes.NewReader(mkTar(t, tc.entries...)), dst, ExtractOptions{})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("got %v, want ErrUnsafe", err)
			}
			// Nothing appeared outside the target.
			ents, _ := os.ReadDir(parent)
			if len(ents) != 1 {
				t.Errorf("entries beside the target: %v", ents)
			}
			filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
				if d != nil && d.Name() == "evil" {
					t.Errorf("escaped file written at %s", p)
				}
				return nil
			})
		})
	}
}

// TestExtractAnySymlinkTarget: links out of the tree are stored as they
// are, and extraction still never writes through one.
func TestExtractAnySymlinkTarget(t *testing.T) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := ExtractOptions{AnySymlinkTarget: true}
	st, err := Extract(bytes.NewReader(mkTar(t,
		entry{name: "venv/bin/python3", link: "/usr/bin/python3", typ: tar.TypeSymlink},
		entry{name: "a/up", link: "../../x", typ: tar.TypeSymlink},
	)), dst, opts)
	if err != nil || st.Symlinks != 2 {
		t.Fatalf("Extract = %+v, %v", st, err)
	}
	for name, want := range map[string]string{"venv/bin/python3": "/usr/bin/python3", "a/up": "../../x"} {
		if got, err := os.Readlink(filepath.Join(dst, name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", name, got, err, want)
		}
	}
	for _, entries := range [][]entry{
		{{name: "out", link: parent, typ: tar.TypeSymlink}, {name: "out/evil", typ: tar.TypeReg, body: "x"}},
		{{name: "up", link: "..", typ: tar.TypeSymlink}, {name: "up/evil", typ: tar.TypeReg, body: "x"}},
		{{name: "e", link: "", typ: tar.TypeSymlink}},
	} {
		if _, err := Extract(bytes.NewReader(mkTar(t, entries...)), dst, opts); !errors.Is(err, ErrUnsafe) {
			t.Errorf("%+v: got %v, want ErrUnsafe", entries, err)
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
		t.Error("a file was written through a symlink out of the tree")
	}
}

func TestExtractKeepsOldFileOnFailure(t *testing.T) {
	dst := t.TempDir()
	if err := os.WriteFile(filepath.Join(dst, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := mkTar(t, entry{name: "f", typ: tar.TypeReg, body: strings.Repeat("new", 1000)})
	// Cut the stream in the middle of the file's data.
	_, err := Extract(bytes.NewReader(good[:512+100]), dst, ExtractOptions{})
	if !errors.Is(err, ErrBadArchive) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated archive: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "old" {
		t.Errorf("old file damaged: %q", b)
	}
	leftovers(t, dst)

	if _, err := Extract(strings.NewReader("this is not a tar archive, not even close......"), dst, ExtractOptions{}); !errors.Is(err, ErrBadArchive) {
		t.Errorf("garbage: %v", err)
	}
}

func TestExtractReplacesAndGzip(t *testing.T) {
	dst := t.TempDir()
	os.WriteFile(filepath.Join(dst, "f"), []byte("old"), 0o600)
	os.Symlink("f", filepath.Join(dst, "l"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(mkTar(t,
		entry{name: "./f", typ: tar.TypeReg, body: "new"},
		entry{name: "l", typ: tar.TypeReg, body: "not a link any more"},
		entry{name: "./", typ: tar.TypeDir},
		entry{name: "d/", typ: tar.TypeDir},
	))
	zw.Close()
	st, err := Extract(&gz, dst, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 2 || st.Dirs != 1 {
		t.Errorf("stats %+v", st)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "new" {
		t.Errorf("f = %q", b)
	}
	if fi, _ := os.Lstat(filepath.Join(dst, "l")); !fi.Mode().IsRegular() {
		t.Errorf("file entry over a symlink wrote through it: %v", fi.Mode())
	}
	// A file entry cannot replace a directory.
	_, err = Extract(bytes.NewReader(mkTar(t, entry{name: "d", typ: tar.TypeReg, body: "x"})), dst, ExtractOptions{})
	if !errors.Is(err, syscall.EISDIR) {
		t.Errorf("file over directory: %v", err)
	}
	leftovers(t, dst)
}

// TestExtractKeepOwners: with KeepOwners every entry, a symlink itself
// included, gets the archive's numeric owner; without, the extracting
// user's.
func TestExtractKeepOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1001, Gid: 1002},
		{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1003, Gid: 1004, Size: 1},
		{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Uid: 1005, Gid: 1006},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	for _, keep := range []bool{true, false} {
		dst := t.TempDir()
		if _, err := Extract(bytes.NewReader(buf.Bytes()), dst, ExtractOptions{KeepOwners: keep, AnySymlinkTarget: true}); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string][2]uint32{"d": {1001, 1002}, "d/f": {1003, 1004}, "d/l": {1005, 1006}} {
			if !keep {
				want = [2]uint32{0, 0}
			}
			fi, err := os.Lstat(filepath.Join(dst, name))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != want[0] || st.Gid != want[1] {
				t.Errorf("keep=%v: %s owned by %d:%d, want %d:%d", keep, name, st.Uid, st.Gid, want[0], want[1])
			}
		}
	}
	// /etc/passwd, the link's target, was not touched.
	if fi, err := os.Stat("/etc/passwd"); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("/etc/passwd owner changed: %v", err)
	}
}
