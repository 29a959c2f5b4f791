package api

import (
	"errors"
	"fmt"
	"time"
)

// Error codes of exposed ports and their preview URLs.
const (
	// CodePreviewNotFound (404): no exposure has this token. Also the
	// answer to a dedicated preview port visited without its token.
	CodePreviewNotFound = "PREVIEW_NOT_FOUND"
	// CodePreviewGone (410): the token was valid, but the port has been
	// unexposed or the sandbox has stopped since. Expose the port again
	// for a new URL.
	CodePreviewGone = "PREVIEW_GONE"
	// CodePortNotListening (502): the port is exposed but nothing inside
	// the sandbox accepts connections on it.
	CodePortNotListening = "PORT_NOT_LISTENING"
	// CodePreviewUpstream (502): the app accepted the connection but
	// failed to answer (closed it, or sent something that is not HTTP).
	CodePreviewUpstream = "PREVIEW_UPSTREAM_ERROR"
)

// Token rules for caller-chosen preview tokens (ExposePortRequest.Token).
// Tokens are part of a host name, which is case-insensitive, so they are
// lower-case; '-' separates the parts of the host label, so it is refused.
const (
	MinPreviewTokenLen = 8
	MaxPreviewTokenLen = 32
)

// ExposePortRequest is the body of POST /v1/sandboxes/{id}/ports.
type ExposePortRequest struct {
	// Port inside the sandbox that a server listens on (1-65535), on any
	// address: the preview proxy connects to 127.0.0.1, then ::1.
	Port int `json:"port"`
	// Name is a free-form label shown in listings.
	Name string `json:"name,omitempty"`
	// Token chooses the URL's secret instead of a random one: 8-32
	// characters of a-z and 0-9. Exposing a port that is already exposed
	// with a different token is a CONFLICT.
	Token string `json:"token,omitempty"`
}

// Validate checks a request before anything is exposed. Ports sbx itself
// serves on are checked by the daemon, which knows them.
func (r *ExposePortRequest) Validate() error {
	if err := ValidatePort(r.Port); err != nil {
		return err
	}
	if len(r.Name) > 63 {
		return fmt.Errorf("name is %d characters long; use at most 63", len(r.Name))
	}
	for _, c := range r.Name {
		if c < 0x20 || c == 0x7f {
			return errors.New("name must not contain control characters")
		}
	}
	if r.Token != "" {
		return ValidatePreviewToken(r.Token)
	}
	return nil
}

// ValidatePort checks a TCP port number.
func ValidatePort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("port %d is out of range; use a TCP port from 1 to 65535", p)
	}
	return nil
}

// ValidatePreviewToken checks a caller-chosen preview token.
func ValidatePreviewToken(t string) error {
	if len(t) < MinPreviewTokenLen || len(t) > MaxPreviewTokenLen {
		return fmt.Errorf("token must be %d-%d characters long, not %d", MinPreviewTokenLen, MaxPreviewTokenLen, len(t))
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("token may only contain a-z and 0-9 (it is part of a case-insensitive host name), not %q", c)
		}
	}
	return nil
}

// ExposedPort is one exposed port and the URLs that reach it.
type ExposedPort struct {
	Port int    `json:"port"`
	Name string `json:"name,omitempty"`
	// URL is the one to hand out: the host-based URL, or the port URL
	// when the host name would be too long for DNS (a label holds 63
	// characters; long sandbox ids exceed it).
	URL  string      `json:"url"`
	URLs PreviewURLs `json:"urls"`
	// ExposedAt is when the port was first exposed in this run of the
	// sandbox; exposing it again keeps its URLs.
	ExposedAt time.Time `json:"exposedAt"`
}

// PreviewURLs are the three forms of a preview URL. All carry the same
// token; all reach the same port.
type PreviewURLs struct {
	// Host is http(s)://{port}-{id}-{token}.{previewDomain}[:port]/, the
	// primary form. It needs a wildcard DNS name for the preview domain;
	// the default, localhost, works in browsers on the daemon's machine.
	Host string `json:"host"`
	// Port is a listener of its own on the preview address, for machines
	// without wildcard DNS. The first visit carries ?sbx_preview_token=…, which sets a
	// cookie and redirects to the same URL without it, so apps with
	// absolute links (/static/app.js) work. Empty if the daemon could not
	// open a listener.
	Port string `json:"port,omitempty"`
	// Path is {daemon}/preview/{id}/{port}/{token}/, the last resort: the
	// app sees paths without the prefix, so its absolute links
	// (/static/app.js) miss it and break.
	Path string `json:"path"`
}

// ExposedPortList is the body of GET /v1/sandboxes/{id}/ports, ordered by
// port.
type ExposedPortList struct {
	Ports []ExposedPort `json:"ports"`
}
