package api

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Error codes of POST /v1/sandboxes/{id}/git/checkout.
const (
	// CodeGitUnreachable (502): the repository's host could not be
	// reached (name not resolved, connection refused or timed out).
	CodeGitUnreachable = "GIT_UNREACHABLE"
	// CodeGitRepoNotFound (404): the host answered but has no such
	// repository (or hides it from these credentials).
	CodeGitRepoNotFound = "GIT_REPO_NOT_FOUND"
	// CodeGitAuthFailed (403): the repository needs credentials and none,
	// or wrong ones, were given.
	CodeGitAuthFailed = "GIT_AUTH_FAILED"
	// CodeGitBranchNotFound (404): the repository has no such branch or
	// tag.
	CodeGitBranchNotFound = "GIT_BRANCH_NOT_FOUND"
	// CodeTargetNotEmpty (409): the target directory exists and is not
	// empty.
	CodeTargetNotEmpty = "TARGET_NOT_EMPTY"
	// CodeGitFailed (500): git failed for another reason; the message
	// carries its output.
	CodeGitFailed = "GIT_FAILED"
)

// DefaultGitUsername is sent with GitCheckoutRequest.Token when no
// username is given. GitHub, GitLab and Gitea accept any non-empty name
// with a personal access token.
const DefaultGitUsername = "x-access-token"

// GitCheckoutRequest is the body of POST /v1/sandboxes/{id}/git/checkout.
//
// Credentials go either in the URL's userinfo
// (https://user:token@host/repo.git, or https://token@host/repo.git with
// the token as the user name) or in Username and Token. Either way
// they reach git through a one-shot credential helper reading the child's
// environment: they are never on a command line, never logged, and never
// written to the clone's .git/config, whose origin is the URL without
// them.
type GitCheckoutRequest struct {
	// URL of the repository: http(s)://, ssh://, git://, file:// or
	// scp-like user@host:path.
	URL string `json:"url"`
	// Branch (or tag) to check out; default: the remote's HEAD.
	Branch string `json:"branch,omitempty"`
	// Depth > 0 makes a shallow clone of that many commits (of Branch
	// only); 0 clones the whole history.
	Depth int `json:"depth,omitempty"`
	// TargetDir is where the clone goes: absolute, or relative to
	// /workspace. Default: /workspace/<repository name>. It must not exist
	// or be empty.
	TargetDir string `json:"targetDir,omitempty"`
	// Username for Token; default DefaultGitUsername.
	Username string `json:"username,omitempty"`
	// Token (or password) for http(s) repositories.
	Token string `json:"token,omitempty"`
}

// GitCheckoutResult is the answer of a successful checkout.
type GitCheckoutResult struct {
	// TargetDir is the absolute path of the clone.
	TargetDir string `json:"targetDir"`
	// URL is the origin as stored in the clone: without credentials.
	URL string `json:"url"`
	// Branch is the checked-out branch; empty when a tag was checked out
	// (detached HEAD).
	Branch string `json:"branch,omitempty"`
	// Commit is the full hash of HEAD.
	Commit     string `json:"commit"`
	DurationMs int64  `json:"durationMs"`
}

// maxGitDepth bounds Depth; deeper is the same as the whole history.
const maxGitDepth = 1 << 24

// Validate checks a checkout request. Both sbxd and the agent call it.
func (r *GitCheckoutRequest) Validate() error {
	if r.URL == "" {
		return errors.New("url is empty; pass a repository URL such as https://github.com/owner/repo.git")
	}
	if strings.HasPrefix(r.URL, "-") {
		return errors.New("url must not start with '-'")
	}
	if hasControl(r.URL) || strings.ContainsAny(r.URL, " \t") {
		return errors.New("url must not contain spaces or control characters")
	}
	scheme, err := GitURLScheme(r.URL)
	if err != nil {
		return err
	}
	if r.Token != "" || r.Username != "" || hasPassword(r.URL) {
		if scheme != "http" && scheme != "https" {
			return fmt.Errorf("credentials are only used with http(s) URLs, not %s; ssh needs a key in the sandbox", scheme)
		}
	}
	if (r.Token != "" || r.Username != "") && hasPassword(r.URL) {
		return errors.New("pass credentials either in the URL or in username/token, not both")
	}
	if r.Username != "" && r.Token == "" {
		return errors.New("username needs a token")
	}
	if hasControl(r.Token) || hasControl(r.Username) {
		return errors.New("username and token must not contain control characters")
	}
	if r.Branch != "" {
		if strings.HasPrefix(r.Branch, "-") || hasControl(r.Branch) || strings.ContainsAny(r.Branch, " \t~^:?*[\\") ||
			strings.Contains(r.Branch, "..") || len(r.Branch) > 255 {
			return fmt.Errorf("branch %q is not a valid branch or tag name", r.Branch)
		}
	}
	if r.Depth < 0 || r.Depth > maxGitDepth {
		return fmt.Errorf("depth must be 0 (whole history) or a positive number of commits, not %d", r.Depth)
	}
	if strings.ContainsRune(r.TargetDir, 0) {
		return errors.New("targetDir must not contain NUL")
	}
	return nil
}

// GitURLScheme returns the transport of a repository URL: http, https,
// ssh, git or file. scp-like user@host:path is ssh.
func GitURLScheme(raw string) (string, error) {
	if i := strings.Index(raw, "://"); i > 0 {
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // the rest of it repeats the URL, credentials and all
			}
			return "", fmt.Errorf("url %q does not parse: %v", RedactURL(raw), err)
		}
		switch s := strings.ToLower(u.Scheme); s {
		case "http", "https", "ssh", "git", "file":
			if s != "file" && u.Host == "" {
				return "", fmt.Errorf("url %q has no host", RedactURL(raw))
			}
			return s, nil
		default:
			return "", fmt.Errorf("url scheme %q is not supported; use https, http, ssh, git or file", u.Scheme)
		}
	}
	// scp-like: [user@]host:path, with no slash before the colon.
	if i := strings.Index(raw, ":"); i > 0 && !strings.Contains(raw[:i], "/") {
		return "ssh", nil
	}
	return "", fmt.Errorf("url %q is not a repository URL; use a form like https://host/owner/repo.git or git@host:owner/repo.git", raw)
}

// RedactURL returns raw with the credentials in its userinfo replaced by
// "***", for messages and logs: a password, or a user name alone in an
// http(s) URL (a token in the user name's place). It works on URLs that
// do not parse too.
func RedactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	switch {
	case hasPassword:
		user += ":***"
	case strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https"):
		user = "***"
	default:
		return raw // ssh://git@host: a user name, not a secret
	}
	return scheme + "://" + user + rest[at:]
}

// GitRepoName is the default directory name of a clone of raw: its last
// path element without .git, as git itself chooses.
func GitRepoName(raw string) string {
	p := raw
	if u, err := url.Parse(raw); err == nil && strings.Contains(raw, "://") {
		p = u.Path
	} else if i := strings.Index(raw, ":"); i > 0 {
		p = raw[i+1:]
	}
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	p = strings.TrimSuffix(p, ".git")
	if p == "" || p == "." || p == ".." {
		return "repo"
	}
	return p
}

func hasPassword(raw string) bool {
	if !strings.Contains(raw, "://") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
