// Command sbx-agent runs inside every sandbox as PID 1: it reaps orphaned
// processes and serves the sandbox-side API on a unix socket that sbxd
// reaches through a bind mount.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/sbx-dev/sbx/internal/agent"
)

func main() {
	socket := flag.String("socket", "/run/sbx/agent.sock", "unix socket to serve the API on")
	flag.Parse()

	if err := os.MkdirAll(filepath.Dir(*socket), 0o755); err != nil {
		log.Fatal(err)
	}
	_ = os.Remove(*socket)
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: agent.New(agent.Config{})}
	log.Fatal(srv.Serve(ln))
}
