package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// aptSource is one apt source entry as apt reads it from either the
// one-line format (sources.list) or a deb822 stanza (*.sources). One stanza
// may name several types, URIs and suites.
type aptSource struct {
	Types      []string
	URIs       []string
	Suites     []string
	Components []string
}

// parseDeb822 reads deb822-style apt sources: stanzas of "Field: value"
// lines separated by blank lines, continuation lines starting with white
// space, and '#' comment lines (which may sit inside a stanza). Stanzas with
// "Enabled: no" and stanzas without Types, URIs or Suites are skipped, as
// apt would not use them.
func parseDeb822(r io.Reader) ([]aptSource, error) {
	var (
		out    []aptSource
		fields = map[string]string{}
		last   string // field a continuation line belongs to
	)
	flush := func() {
		defer clear(fields)
		if strings.EqualFold(strings.TrimSpace(fields["enabled"]), "no") {
			return
		}
		s := aptSource{
			Types:      strings.Fields(fields["types"]),
			URIs:       strings.Fields(fields["uris"]),
			Suites:     strings.Fields(fields["suites"]),
			Components: strings.Fields(fields["components"]),
		}
		if len(s.Types) > 0 && len(s.URIs) > 0 && len(s.Suites) > 0 {
			out = append(out, s)
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20) // embedded Signed-By keys make long stanzas
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
			last = ""
		case strings.HasPrefix(line, "#"):
			// A comment; it does not end the stanza.
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				last = ""
				continue // not a field; apt would refuse the file, we only look for a mirror
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	flush()
	return out, nil
}

// parseOneLine reads one-line apt sources:
//
//	deb [ option=value ... ] uri suite [component ...]
//
// '#' starts a comment anywhere on a line.
func parseOneLine(r io.Reader) ([]aptSource, error) {
	var out []aptSource
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		typ := f[0]
		rest := strings.TrimSpace(line[len(typ):])
		if strings.HasPrefix(rest, "[") {
			end := strings.Index(rest, "]")
			if end < 0 {
				continue // unterminated options; apt refuses the line too
			}
			rest = rest[end+1:]
		}
		f = strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		out = append(out, aptSource{
			Types:      []string{typ},
			URIs:       []string{f[0]},
			Suites:     []string{f[1]},
			Components: f[2:],
		})
	}
	return out, sc.Err()
}

// readHostSources returns the apt sources configured under etcApt
// (normally /etc/apt) in the order apt reads them: sources.list first, then
// sources.list.d/*.list and *.sources in lexical order. Files with other
// names (for example "foo.list.disabled") are ignored, as apt ignores them.
func readHostSources(etcApt string) ([]aptSource, error) {
	var out []aptSource
	read := func(path string, parse func(io.Reader) ([]aptSource, error)) error {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		srcs, err := parse(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		out = append(out, srcs...)
		return nil
	}
	if err := read(filepath.Join(etcApt, "sources.list"), parseOneLine); err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, n := range names {
		switch filepath.Ext(n) {
		case ".list":
			err = read(n, parseOneLine)
		case ".sources":
			err = read(n, parseDeb822)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mirrors are the archive URIs an image is built from.
type mirrors struct {
	// Main serves the release itself and its -updates suite.
	Main string
	// Security serves <suite>-security; empty means none is used.
	Security string
}

// chooseMirrors picks, from the host's apt sources, the first binary
// ("deb") URI that serves suite (an entry for suite itself or one of its
// non-security companions like suite-updates), else the first one that
// looks like a plain Debian archive (path ending in /debian), so that a
// host on another Debian release still yields its mirror. The security
// archive is the URI of a suite-security entry, else of any *-security
// entry on a debian-security path. Only http, https and file URIs are
// considered: they are what debootstrap can fetch from.
func chooseMirrors(srcs []aptSource, suite string) (mirrors, error) {
	var m mirrors
	var fallback string
	for _, s := range srcs {
		if !slices.Contains(s.Types, "deb") {
			continue
		}
		for _, u := range s.URIs {
			if !fetchable(u) {
				continue
			}
			for _, su := range s.Suites {
				security := strings.HasSuffix(su, "-security") || strings.HasSuffix(su, "/updates")
				switch {
				case security && m.Security == "" && (su == suite+"-security" || isDebianPath(u, "debian-security")):
					m.Security = u
				case !security && m.Main == "" && (su == suite || strings.HasPrefix(su, suite+"-")):
					m.Main = u
				case !security && fallback == "" && isDebianPath(u, "debian"):
					fallback = u
				}
			}
		}
	}
	if m.Main == "" {
		m.Main = fallback
	}
	if m.Main == "" {
		return m, fmt.Errorf("no Debian mirror in the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources) serves %s: pass --mirror URL, for example the URL of a Debian archive mirror", suite)
	}
	return m, nil
}

// fetchable reports whether debootstrap and apt can fetch from u as is.
func fetchable(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	switch p.Scheme {
	case "http", "https":
		return p.Host != ""
	case "file":
		return p.Path != ""
	}
	return false
}

// isDebianPath reports whether the last path element of URI u is name.
func isDebianPath(u, name string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	return filepath.Base(strings.TrimRight(p.Path, "/")) == name
}
