package api

import (
	"strings"
	"testing"
)

func TestExposePortRequestValidate(t *testing.T) {
	tests := []struct {
		req     ExposePortRequest
		wantErr string
	}{
		{ExposePortRequest{Port: 1}, ""},
		{ExposePortRequest{Port: 65535, Name: "vite dev server", Token: "abcdefgh"}, ""},
		{ExposePortRequest{Port: 8080, Token: strings.Repeat("a1", 16)}, ""},
		{ExposePortRequest{Port: 0}, "out of range"},
		{ExposePortRequest{Port: 65536}, "out of range"},
		{ExposePortRequest{Port: -80}, "out of range"},
		{ExposePortRequest{Port: 80, Name: strings.Repeat("n", 64)}, "at most 63"},
		{ExposePortRequest{Port: 80, Name: "a\nb"}, "control characters"},
		{ExposePortRequest{Port: 80, Token: "abcdefg"}, "8-32 characters"},
		{ExposePortRequest{Port: 80, Token: strings.Repeat("a", 33)}, "8-32 characters"},
		{ExposePortRequest{Port: 80, Token: "Abcdefgh"}, "a-z and 0-9"},
		{ExposePortRequest{Port: 80, Token: "abcd-efgh"}, "a-z and 0-9"},
		{ExposePortRequest{Port: 80, Token: "abcd_efgh"}, "a-z and 0-9"},
	}
	for _, tc := range tests {
		err := tc.req.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.req, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v: error %v, want one saying %q", tc.req, err, tc.wantErr)
		}
	}
}
