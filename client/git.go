package client

import (
	"context"
	"net/http"

	"github.com/sbx-dev/sbx/api"
)

// GitCheckout clones a repository into the sandbox, creating or waking it
// first. Credentials go in req.URL's userinfo or in req.Username and
// req.Token; they are used for this clone only and never stored in the
// sandbox.
//
//	res, err := sb.GitCheckout(ctx, api.GitCheckoutRequest{
//		URL: "https://github.com/owner/repo.git", Branch: "main", Depth: 1,
//	})
//	fmt.Println(res.TargetDir) // /workspace/repo
func (s *Sandbox) GitCheckout(ctx context.Context, req api.GitCheckoutRequest) (*api.GitCheckoutResult, error) {
	var res api.GitCheckoutResult
	if err := s.c.do(ctx, http.MethodPost, s.path("/git/checkout"), req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
