package fstree

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGitIgnore(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".gitignore", "# comment\n*.log\n!keep.log\nbuild/\n/top.txt\ndocs/*.tmp\n**/gen/**\n\\#hash\ntrailing   \n")
	write("sub/.gitignore", "*.txt\n!important.txt\nkeep.log\n")
	g := NewGitIgnore(root)
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{"a.log", false, true},
		{"deep/x/a.log", false, true},
		{"keep.log", false, false},
		{"sub/keep.log", false, true}, // the deeper file wins
		{"build", true, true},
		{"build", false, false}, // directories only
		{"src/build", true, true},
		{"top.txt", false, true},
		{"sub/top.txt", false, true}, // ignored by sub's *.txt
		{"x/top.txt", false, false},  // anchored at the root
		{"docs/a.tmp", false, true},
		{"docs/sub/a.tmp", false, false},
		{"a/gen/b/c", false, true},
		{"#hash", false, true},
		{"trailing", false, true},
		{"sub/important.txt", false, false},
		{"sub/notes.txt", false, true},
		{"main.go", false, false},
		{".gitignore", false, false},
	}
	for _, tc := range tests {
		if got := g.Match(tc.rel, tc.isDir); got != tc.want {
			t.Errorf("Match(%q, dir=%v) = %v, want %v", tc.rel, tc.isDir, got, tc.want)
		}
	}
}
