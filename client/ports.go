package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/sbx-dev/sbx/api"
)

// ExposeOption adjusts one ExposePort call.
type ExposeOption func(*api.ExposePortRequest)

// WithPortName labels the exposed port in listings.
func WithPortName(name string) ExposeOption {
	return func(r *api.ExposePortRequest) { r.Name = name }
}

// WithPreviewToken chooses the preview URLs' token (8-32 characters of a-z
// and 0-9) instead of a random one.
func WithPreviewToken(token string) ExposeOption {
	return func(r *api.ExposePortRequest) { r.Token = token }
}

// ExposePort makes port inside the sandbox reachable at preview URLs,
// creating or waking the sandbox first. Exposing a port again returns the
// same URLs while the sandbox runs; when it stops they answer 410.
//
//	ep, err := sb.ExposePort(ctx, 8080)
//	fmt.Println(ep.URL) // http://8080-demo-k3j…q.localhost:7070/
func (s *Sandbox) ExposePort(ctx context.Context, port int, opts ...ExposeOption) (*api.ExposedPort, error) {
	req := api.ExposePortRequest{Port: port}
	for _, o := range opts {
		o(&req)
	}
	var ep api.ExposedPort
	if err := s.c.do(ctx, http.MethodPost, s.path("/ports"), req, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// Ports lists the sandbox's exposed ports, by port. It does not create or
// wake the sandbox.
func (s *Sandbox) Ports(ctx context.Context) ([]api.ExposedPort, error) {
	var l api.ExposedPortList
	if err := s.c.do(ctx, http.MethodGet, s.path("/ports"), nil, &l); err != nil {
		return nil, err
	}
	return l.Ports, nil
}

// UnexposePort stops serving port's preview URLs (they answer 410 until it
// is exposed again). Unexposing a port that is not exposed is not an error.
func (s *Sandbox) UnexposePort(ctx context.Context, port int) error {
	return s.c.do(ctx, http.MethodDelete, s.path("/ports/"+strconv.Itoa(port)), nil, nil)
}
