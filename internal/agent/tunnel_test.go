package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// dialTunnel asks the agent for a tunnel to port with the given headers
// and returns the connection after a 101, or the error answer.
func dialTunnel(t *testing.T, c *testClient, query string, hdr string) (net.Conn, *http.Response) {
	t.Helper()
	tr := c.hc.Transport.(*http.Transport)
	conn, err := tr.DialContext(context.Background(), "unix", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET /tunnel?"+query+" HTTP/1.1\r\nHost: agent\r\n"+hdr+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp
	}
	if br.Buffered() != 0 {
		t.Fatal("bytes after the 101 before anything was sent")
	}
	return conn, resp
}

// echoServer accepts connections on network/addr and echoes each until
// its end-of-file, then closes it.
func echoServer(t *testing.T, network, addr string) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

const upgrade = "Connection: Upgrade\r\nUpgrade: sbx-tunnel\r\n"

func TestTunnelCarriesBytesBothWays(t *testing.T) {
	c, _ := startAgent(t, Config{})
	for _, tc := range []struct{ name, network, addr string }{
		{"IPv4", "tcp4", "127.0.0.1:0"},
		{"IPv6 loopback only", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := echoServer(t, tc.network, tc.addr)
			conn, resp := dialTunnel(t, c, "port="+strconv.Itoa(port), upgrade)
			if conn == nil {
				t.Fatalf("no tunnel: %s", resp.Status)
			}
			if !headerHasToken(resp.Header, "Connection", "upgrade") || resp.Header.Get("Upgrade") != "sbx-tunnel" {
				t.Errorf("101 headers %v", resp.Header)
			}
			msg := make([]byte, 1<<20)
			for i := range msg {
				msg[i] = byte(i)
			}
			go func() {
				_, _ = conn.Write(msg)
				// Half-close: the app sees end-of-file and finishes.
				_ = conn.(*net.UnixConn).CloseWrite()
			}()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil || len(got) != len(msg) || string(got) != string(msg) {
				t.Fatalf("echo: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestTunnelRefusals(t *testing.T) {
	c, _ := startAgent(t, Config{})
	// A port nobody listens on: listen, note it, close.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tests := []struct {
		name, query, hdr string
		status           int
		code             string
	}{
		{"nothing listening", "port=" + strconv.Itoa(closed), upgrade, 502, api.CodePortNotListening},
		{"no upgrade", "port=80", "", 400, api.CodeInvalidRequest},
		{"other upgrade", "port=80", "Connection: Upgrade\r\nUpgrade: websocket\r\n", 400, api.CodeInvalidRequest},
		{"port missing", "", upgrade, 400, api.CodeInvalidRequest},
		{"port zero", "port=0", upgrade, 400, api.CodeInvalidRequest},
		{"port too large", "port=65536", upgrade, 400, api.CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp := dialTunnel(t, c, tc.query, tc.hdr)
			if conn != nil {
				t.Fatal("tunnel opened")
			}
			defer resp.Body.Close()
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != tc.status || e.Code != tc.code || e.Message == "" {
				t.Errorf("%s %+v %v, want %d %s", resp.Status, e, err, tc.status, tc.code)
			}
		})
	}
}
