package fstree

import (
	"fmt"
	"path"
	"strings"
)

// Globs is a set of glob patterns matched against slash-separated paths
// relative to the root of a tree ("src/main.go"). A nil *Globs matches
// nothing.
//
// A pattern without a slash ("*.log", "node_modules") matches an entry
// whose name matches it, at any depth. A pattern with a slash
// ("build/*.o", "/docs", "src/**/*.go") is anchored at the root and matched
// element by element; "**" matches any number of elements, including none.
// Elements use path.Match syntax. An entry matches when it or any of its
// parent directories matches, so excluding "node_modules" excludes
// everything beneath it too.
type Globs struct {
	pats []glob
}

type glob struct {
	anchored bool
	elems    []string
}

// ParseGlobs compiles patterns, refusing malformed ones with a message
// naming the pattern. Empty patterns are ignored; no patterns gives nil.
func ParseGlobs(patterns []string) (*Globs, error) {
	var g Globs
	for _, p := range patterns {
		orig := p
		p = strings.Trim(p, "/")
		if p == "" {
			continue
		}
		gl := glob{anchored: strings.Contains(orig, "/"), elems: strings.Split(p, "/")}
		for _, e := range gl.elems {
			if _, err := path.Match(e, ""); err != nil {
				return nil, fmt.Errorf("glob %q is malformed: %v", orig, err)
			}
		}
		g.pats = append(g.pats, gl)
	}
	if len(g.pats) == 0 {
		return nil, nil
	}
	return &g, nil
}

// Match reports whether rel, a clean slash-separated relative path, or one
// of its parent directories matches a pattern.
func (g *Globs) Match(rel string) bool {
	if g == nil || rel == "" || rel == "." {
		return false
	}
	parts := strings.Split(rel, "/")
	for _, p := range g.pats {
		if !p.anchored {
			for _, el := range parts {
				if ok, _ := path.Match(p.elems[0], el); ok {
					return true
				}
			}
			continue
		}
		for n := 1; n <= len(parts); n++ {
			if matchElems(p.elems, parts[:n]) {
				return true
			}
		}
	}
	return false
}

// matchElems matches pattern elements against path elements, "**"
// standing for any number of path elements.
func matchElems(pat, parts []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(parts); i++ {
				if matchElems(pat[1:], parts[i:]) {
					return true
				}
			}
			return false
		}
		if len(parts) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], parts[0]); !ok {
			return false
		}
		pat, parts = pat[1:], parts[1:]
	}
	return len(parts) == 0
}
