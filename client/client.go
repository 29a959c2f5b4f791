// Package client is the Go SDK for sbx: typed, context-first access to the
// sbxd HTTP API.
//
//	c, err := client.New()                 // SBX_URL and SBX_TOKEN from the environment
//	res, err := c.Sandbox("demo").Exec(ctx, "python3 -c 'print(2+2)'")
//	fmt.Print(res.Stdout)                   // 4
//
// Errors returned by the API match the package's sentinels with errors.Is
// (ErrNotFound, ErrInvalidArgument, …) and carry the server's code and
// message as *Error.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/sbx-dev/sbx/api"
)

// DefaultURL is used when neither WithURL nor SBX_URL says otherwise.
const DefaultURL = "http://127.0.0.1:7070"

// Sentinel errors; test with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrUnauthorized    = errors.New("unauthorized")
	ErrConflict        = errors.New("conflict")
	ErrCapacity        = errors.New("capacity exceeded")
	ErrUnavailable     = errors.New("sandbox unavailable")
)

// Error is an error answered by the API.
type Error struct {
	Status  int    // HTTP status
	Code    string // stable code, e.g. SANDBOX_NOT_FOUND
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is maps the API's codes and statuses onto the package's sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrInvalidArgument:
		return e.Status == http.StatusBadRequest
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrCapacity:
		return e.Code == api.CodeCapacityExceeded
	case ErrUnavailable:
		return e.Code == api.CodeSandboxUnavailable
	}
	return false
}

// Client talks to one sbxd.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithURL sets the daemon's base URL, e.g. http://127.0.0.1:7070.
func WithURL(u string) Option { return func(c *Client) { c.base = strings.TrimRight(u, "/") } }

// WithToken sets the bearer token.
func WithToken(t string) Option { return func(c *Client) { c.token = t } }

// WithHTTPClient replaces the HTTP client (timeouts, transports).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// New returns a Client configured from SBX_URL and SBX_TOKEN, then opts.
func New(opts ...Option) (*Client, error) {
	c := &Client{base: DefaultURL, token: os.Getenv("SBX_TOKEN"), hc: &http.Client{}}
	if u := os.Getenv("SBX_URL"); u != "" {
		c.base = strings.TrimRight(u, "/")
	}
	for _, o := range opts {
		o(c)
	}
	if _, err := url.Parse(c.base); err != nil || !strings.HasPrefix(c.base, "http") {
		return nil, fmt.Errorf("sbx URL %q: use a form like http://127.0.0.1:7070", c.base)
	}
	return c, nil
}

// URL is the daemon's base URL.
func (c *Client) URL() string { return c.base }

// newRequest builds an authenticated request for path (which starts with /).
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends in as JSON (if non-nil) and decodes the answer into out (if
// non-nil). Non-2xx answers become *Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("sbx: %w (is sbxd running at %s?)", err, c.base)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("sbx: decoding %s %s response: %w", method, path, err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
		return &Error{Status: resp.StatusCode, Code: "HTTP_" + fmt.Sprint(resp.StatusCode), Message: strings.TrimSpace(string(b))}
	}
	return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
}

// Health checks that the daemon answers.
func (c *Client) Health(ctx context.Context) error {
	var h api.Health
	return c.do(ctx, http.MethodGet, "/healthz", nil, &h)
}

// List returns every sandbox.
func (c *Client) List(ctx context.Context) ([]api.Sandbox, error) {
	var l api.SandboxList
	if err := c.do(ctx, http.MethodGet, "/v1/sandboxes", nil, &l); err != nil {
		return nil, err
	}
	return l.Sandboxes, nil
}

// Sandbox returns a handle on sandbox id. Nothing is sent until a method is
// called; the first call that needs the sandbox creates it.
func (c *Client) Sandbox(id string) *Sandbox { return &Sandbox{c: c, ID: id} }

// Sandbox is a handle on one sandbox by id.
type Sandbox struct {
	c  *Client
	ID string
}

func (s *Sandbox) path(suffix string) string { return "/v1/sandboxes/" + url.PathEscape(s.ID) + suffix }

// Create creates and starts the sandbox with opts (nil for defaults), or
// returns it if it already exists with the same options.
func (s *Sandbox) Create(ctx context.Context, opts *api.CreateSandboxRequest) (*api.Sandbox, error) {
	if opts == nil {
		opts = &api.CreateSandboxRequest{}
	}
	var sb api.Sandbox
	if err := s.c.do(ctx, http.MethodPut, s.path(""), opts, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// Get returns the sandbox's state without creating or waking it.
func (s *Sandbox) Get(ctx context.Context) (*api.Sandbox, error) {
	var sb api.Sandbox
	if err := s.c.do(ctx, http.MethodGet, s.path(""), nil, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// Stop stops the sandbox now; the next request starts it again.
func (s *Sandbox) Stop(ctx context.Context) (*api.Sandbox, error) {
	var sb api.Sandbox
	if err := s.c.do(ctx, http.MethodPost, s.path("/stop"), nil, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// Destroy removes the sandbox and everything in it. Destroying an absent
// sandbox is not an error.
func (s *Sandbox) Destroy(ctx context.Context) error {
	return s.c.do(ctx, http.MethodDelete, s.path(""), nil, nil)
}

// ExecOption adjusts one exec call.
type ExecOption func(*api.ExecRequest)

// WithCwd sets the working directory.
func WithCwd(dir string) ExecOption { return func(r *api.ExecRequest) { r.Cwd = dir } }

// WithEnv adds environment variables for this call.
func WithEnv(env map[string]string) ExecOption {
	return func(r *api.ExecRequest) { r.Env = env }
}

// WithStdin feeds s to the command's standard input.
func WithStdin(s string) ExecOption { return func(r *api.ExecRequest) { r.Stdin = &s } }

// WithTimeout kills the command after ms milliseconds.
func WithTimeout(ms int64) ExecOption { return func(r *api.ExecRequest) { r.TimeoutMs = ms } }

// Exec runs `bash -c command` in the sandbox, creating it if needed. A
// non-zero exit code is reported in the result, not as an error.
func (s *Sandbox) Exec(ctx context.Context, command string, opts ...ExecOption) (*api.ExecResult, error) {
	req := api.ExecRequest{Command: command}
	for _, o := range opts {
		o(&req)
	}
	return s.ExecRequest(ctx, req)
}

// ExecRequest is Exec with a full request.
func (s *Sandbox) ExecRequest(ctx context.Context, req api.ExecRequest) (*api.ExecResult, error) {
	var res api.ExecResult
	if err := s.c.do(ctx, http.MethodPost, s.path("/exec"), req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
