package fstree

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// GitIgnore answers whether paths of a tree are ignored by the .gitignore
// files in that tree, as git would say: a .gitignore applies to the
// directory holding it and everything beneath; within a file later lines
// win, and a deeper file wins over a shallower one; "!" re-includes; a
// trailing "/" matches directories only; a pattern with a '/' before its
// end is anchored at its .gitignore's directory, one without matches a name
// at any depth; "**" matches any number of directories. As in git, nothing
// beneath an ignored directory can be re-included (walkers skip it).
//
// Only .gitignore files inside the tree count: not .git/info/exclude, not
// the user's global excludes. Files are read lazily, once per directory.
// A GitIgnore is safe for concurrent use.
type GitIgnore struct {
	root string

	mu    sync.Mutex
	rules map[string][]ignoreRule // by directory relative to root, "" for root
}

type ignoreRule struct {
	negate, dirOnly, anchored bool
	elems                     []string
}

// NewGitIgnore returns the matcher of the tree at root.
func NewGitIgnore(root string) *GitIgnore {
	return &GitIgnore{root: root, rules: map[string][]ignoreRule{}}
}

// Match reports whether rel, a clean slash-separated path relative to the
// root, is ignored. isDir says whether it is a directory.
func (g *GitIgnore) Match(rel string, isDir bool) bool {
	if g == nil || rel == "" || rel == "." {
		return false
	}
	parts := strings.Split(rel, "/")
	ignored := false
	// Directories from the root down to rel's parent, shallow first, so
	// that the last matching rule seen is the one that counts.
	for depth := 0; depth < len(parts); depth++ {
		dir := strings.Join(parts[:depth], "/")
		sub := parts[depth:]
		for _, r := range g.load(dir) {
			if r.dirOnly && !isDir {
				continue
			}
			if r.matches(sub) {
				ignored = !r.negate
			}
		}
	}
	return ignored
}

func (r ignoreRule) matches(sub []string) bool {
	if !r.anchored {
		ok, _ := path.Match(r.elems[0], sub[len(sub)-1])
		return ok
	}
	return matchElems(r.elems, sub)
}

// load returns the rules of dir's .gitignore, reading it on first use.
func (g *GitIgnore) load(dir string) []ignoreRule {
	g.mu.Lock()
	defer g.mu.Unlock()
	if rules, ok := g.rules[dir]; ok {
		return rules
	}
	raw, err := os.ReadFile(filepath.Join(g.root, filepath.FromSlash(dir), ".gitignore"))
	var rules []ignoreRule
	if err == nil {
		rules = parseGitIgnore(string(raw))
	}
	g.rules[dir] = rules
	return rules
}

// parseGitIgnore compiles the lines of a .gitignore file; lines that are
// not valid patterns are skipped, as git does.
func parseGitIgnore(text string) []ignoreRule {
	var rules []ignoreRule
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		// Trailing spaces are ignored unless escaped with a backslash.
		for strings.HasSuffix(line, " ") && !strings.HasSuffix(line, `\ `) {
			line = line[:len(line)-1]
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var r ignoreRule
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, line[1:]
		} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly, line = true, strings.TrimRight(line, "/")
		}
		if line == "" {
			continue
		}
		r.anchored = strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		r.elems = strings.Split(line, "/")
		valid := true
		for _, e := range r.elems {
			if _, err := path.Match(e, ""); err != nil || e == "" {
				valid = false
			}
		}
		if valid {
			rules = append(rules, r)
		}
	}
	return rules
}
