package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// git checkout: `git clone` run as a child of the agent (through the
// reaper, like every command).
//
// Credentials never touch a command line or a file. git gets a credential
// helper on its own command line (-c, which applies to this run only and,
// placed before the subcommand, is not copied into the clone's config)
// that prints two environment variables set for this child alone; an empty
// helper before it drops any helper the image configures, so nothing
// stores them. The clone's origin is the URL without userinfo, and the
// clone's .git/config is checked for the secret before success is
// reported. git never prompts: a repository that wants credentials it was
// not given fails at once.

const (
	// gitOutputCap is how much of git's output is kept for messages.
	gitOutputCap = 64 << 10
	// gitHelper answers git's credential requests from the environment.
	gitHelper = `!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$SBX_GIT_USERNAME" "$SBX_GIT_PASSWORD"; }; f`
)

func (a *Agent) registerGit() {
	a.mux.HandleFunc("POST /git/checkout", a.handleGitCheckout)
}

func (a *Agent) handleGitCheckout(w http.ResponseWriter, r *http.Request) {
	var req api.GitCheckoutRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := req.Validate(); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	res, err := a.gitCheckout(r.Context(), &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}

// gitCredentials are a request's credentials and the URL without them.
type gitCredentials struct {
	url, username, password string
}

// splitCredentials takes credentials out of the URL's userinfo or the
// request's fields. A user name alone in an http(s) URL is a credential
// too (https://TOKEN@host/…, as GitHub documents for tokens) and is sent
// with an empty password; in other URLs (ssh's git@…) it stays.
func splitCredentials(req *api.GitCheckoutRequest) gitCredentials {
	c := gitCredentials{url: req.URL, username: req.Username, password: req.Token}
	if req.Token != "" && c.username == "" {
		c.username = api.DefaultGitUsername
	}
	if !strings.Contains(req.URL, "://") {
		return c
	}
	u, err := url.Parse(req.URL)
	if err != nil || u.User == nil {
		return c
	}
	if pw, ok := u.User.Password(); ok {
		c.username, c.password = u.User.Username(), pw
	} else if req.Token != "" {
		// https://alice@host/… with a token: alice is the user name.
		c.username = u.User.Username()
	} else if s := strings.ToLower(u.Scheme); s == "http" || s == "https" {
		c.username = u.User.Username()
	} else {
		return c
	}
	u.User = nil
	c.url = u.String()
	return c
}

// given reports whether the request carried credentials.
func (c *gitCredentials) given() bool { return c.username != "" || c.password != "" }

// secret is what must never be shown or stored: the password, or the user
// name when it came alone (a token in the user name's place).
func (c *gitCredentials) secret() string {
	if c.password != "" {
		return c.password
	}
	return c.username
}

// storedIn reports whether config holds the secret: anywhere for a
// password, in a URL's userinfo for a user name (which may well also name
// the repository's owner, as in https://alice@host/alice/repo.git).
func (c *gitCredentials) storedIn(config string) bool {
	if c.password != "" {
		return strings.Contains(config, c.password) || strings.Contains(config, url.User(c.password).String())
	}
	u := url.User(c.username).String()
	return strings.Contains(config, "/"+c.username+"@") || strings.Contains(config, "/"+u+"@")
}

// redact replaces the secret in s.
func (c *gitCredentials) redact(s string) string {
	secret := c.secret()
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "***")
	if esc := url.QueryEscape(secret); esc != secret {
		s = strings.ReplaceAll(s, esc, "***")
	}
	if esc := url.User(secret).String(); esc != secret { // as in a URL's userinfo
		s = strings.ReplaceAll(s, esc, "***")
	}
	return s
}

func (a *Agent) gitCheckout(ctx context.Context, req *api.GitCheckoutRequest) (*api.GitCheckoutResult, error) {
	start := time.Now()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("%w: git is not installed in this sandbox's image", errdefs.ErrGitFailed)
	}
	creds := splitCredentials(req)
	target := req.TargetDir
	if target == "" {
		target = api.GitRepoName(creds.url)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(a.cfg.DefaultCwd, target)
	}
	target = filepath.Clean(target)
	if err := checkCloneTarget(target); err != nil {
		return nil, err
	}

	argv := []string{"git"}
	if creds.given() {
		// Only this helper: none the image configures sees, or stores, the
		// secret. Without credentials the sandbox's own helpers apply.
		argv = append(argv, "-c", "credential.helper=", "-c", "credential.helper="+gitHelper)
	}
	argv = append(argv, "clone", "--quiet")
	if req.Depth > 0 {
		argv = append(argv, "--depth", strconv.Itoa(req.Depth))
	}
	if req.Branch != "" {
		argv = append(argv, "--branch", req.Branch)
	}
	argv = append(argv, "--", creds.url, target)
	env := append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "LC_ALL=C")
	if os.Getenv("GIT_SSH_COMMAND") == "" {
		// Fail rather than wait for a host key or passphrase prompt.
		env = append(env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	if creds.given() {
		env = append(env, "SBX_GIT_USERNAME="+creds.username, "SBX_GIT_PASSWORD="+creds.password)
	}
	out, code, err := runChild(ctx, gitPath, argv, env, "/")
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, classifyGitFailure(creds.redact(out), creds.url, req.Branch, target)
	}

	gitDir := filepath.Join(target, ".git")
	if creds.given() {
		cfg, err := os.ReadFile(filepath.Join(gitDir, "config"))
		if err != nil || creds.storedIn(string(cfg)) {
			// Never leave a secret behind, even if git someday writes one.
			os.RemoveAll(target)
			return nil, fmt.Errorf("%w: the clone's .git/config could not be checked for credentials, so it was removed", errdefs.ErrGitFailed)
		}
	}
	branch, commit, err := readHead(gitDir)
	if err != nil {
		return nil, fmt.Errorf("%w: cloned, but reading HEAD: %v", errdefs.ErrGitFailed, err)
	}
	return &api.GitCheckoutResult{TargetDir: target, URL: creds.url, Branch: branch, Commit: commit,
		DurationMs: time.Since(start).Milliseconds()}, nil
}

// checkCloneTarget refuses a target that exists and is not an empty
// directory, before anything is fetched.
func checkCloneTarget(target string) error {
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%w: target directory %s: %v", errdefs.ErrGitFailed, target, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s exists and is not a directory; choose another targetDir", errdefs.ErrTargetNotEmpty, target)
	}
	d, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("%w: target directory %s: %v", errdefs.ErrGitFailed, target, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("%w: %s exists and is not empty; remove it or choose another targetDir", errdefs.ErrTargetNotEmpty, target)
	}
	return nil
}

// classifyGitFailure turns git's output (LC_ALL=C) into an error with a
// stable code.
func classifyGitFailure(out, repo, branch, target string) error {
	msg := lastLines(out, 6)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(out, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("not found in upstream origin", "Could not find remote branch"):
		return fmt.Errorf("%w: %s has no branch or tag %q: %s", errdefs.ErrGitBranchNotFound, repo, branch, msg)
	case has("already exists and is not an empty directory"):
		return fmt.Errorf("%w: %s exists and is not empty: %s", errdefs.ErrTargetNotEmpty, target, msg)
	case has("Authentication failed", "could not read Username", "could not read Password",
		"terminal prompts disabled", "returned error: 401", "returned error: 403", "Permission denied (publickey"):
		return fmt.Errorf("%w: %s needs credentials, or the given ones were refused (pass them in the URL or as username/token): %s",
			errdefs.ErrGitAuthFailed, repo, msg)
	case has("returned error: 404", "not found", "does not appear to be a git repository", "does not exist"):
		return fmt.Errorf("%w: %s: %s", errdefs.ErrGitRepoNotFound, repo, msg)
	case has("The requested URL returned error"):
		return fmt.Errorf("%w: the server of %s failed: %s", errdefs.ErrGitFailed, repo, msg)
	case has("Could not resolve host", "Failed to connect", "Connection refused", "Connection timed out",
		"Couldn't connect to server", "Network is unreachable", "No route to host", "Could not resolve hostname",
		"Operation timed out", "unable to access", "Could not read from remote repository"):
		return fmt.Errorf("%w: cannot reach %s from the sandbox: %s", errdefs.ErrGitUnreachable, repo, msg)
	}
	return fmt.Errorf("%w: git clone of %s: %s", errdefs.ErrGitFailed, repo, msg)
}

// lastLines returns the last n non-empty lines of s, joined by "; ".
func lastLines(s string, n int) string {
	var lines []string
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "git failed without a message"
	}
	return strings.Join(lines, "; ")
}

// runChild runs a program to completion through the reaper and returns its
// combined output (the first gitOutputCap bytes) and exit code. A cancelled
// ctx kills its process group.
func runChild(ctx context.Context, path string, argv, env []string, dir string) (string, int, error) {
	stdin, err := devNull()
	if err != nil {
		return "", 0, fmt.Errorf("open stdin: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return "", 0, fmt.Errorf("create output pipe: %w", err)
	}
	p, err := startProcess(&startSpec{path: path, argv: argv, env: env, dir: dir, files: []*os.File{stdin, w, w}})
	w.Close()
	if err != nil {
		r.Close()
		return "", 0, startError(path, err)
	}
	outc := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, gitOutputCap))
		_, _ = io.Copy(io.Discard, r) // never block the child on a full pipe
		r.Close()
		outc <- string(b)
	}()
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.signalGroup(syscall.SIGKILL)
		t := time.NewTimer(killWait)
		select {
		case <-p.Done():
		case <-t.C:
		}
		t.Stop()
		return "", 0, fmt.Errorf("%w: git killed because its request was cancelled: %v", errdefs.ErrUnavailable, context.Cause(ctx))
	}
	// The output ends when the last holder of the pipe exits; a helper
	// left in the background must not hold the answer back.
	t := time.NewTimer(time.Second)
	defer t.Stop()
	var out string
	select {
	case out = <-outc:
	case <-t.C:
	}
	return out, exitCode(p.Status()), nil
}

// readHead returns the branch HEAD names (empty if detached) and the
// commit it resolves to, reading the files git writes.
func readHead(gitDir string) (branch, commit string, err error) {
	b, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return "", "", err
	}
	head := strings.TrimSpace(string(b))
	ref, symbolic := strings.CutPrefix(head, "ref: ")
	if !symbolic {
		return "", head, nil
	}
	branch = strings.TrimPrefix(ref, "refs/heads/")
	if b, err := os.ReadFile(filepath.Join(gitDir, filepath.FromSlash(ref))); err == nil {
		return branch, strings.TrimSpace(string(b)), nil
	}
	f, err := os.Open(filepath.Join(gitDir, "packed-refs"))
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if hash, name, ok := strings.Cut(sc.Text(), " "); ok && name == ref {
			return branch, hash, nil
		}
	}
	return "", "", fmt.Errorf("ref %s not found", ref)
}
