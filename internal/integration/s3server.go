package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// S3 test server credentials.
const (
	S3AccessKey = "sbx-test-access"
	S3SecretKey = "sbx-test-secret-key"
)

// S3Server is a versitygw process (posix backend) serving a temporary
// directory on a loopback port: the real S3-compatible server of the
// end-to-end tests. The binary is $SBX_TEST_S3_BIN or versitygw on PATH
// (hack/install-s3.sh installs it); without it tests skip, except under
// CI, where they fail.
type S3Server struct {
	t    TB
	Bin  string
	Dir  string
	Addr string
	URL  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *bytes.Buffer
	waited chan struct{}
}

// StartS3 starts a server and stops it when the test ends.
func StartS3(t TB) *S3Server {
	t.Helper()
	bin := os.Getenv("SBX_TEST_S3_BIN")
	if bin == "" {
		p, err := exec.LookPath("versitygw")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("versitygw is not installed (CI must run hack/install-s3.sh): %v", err)
			}
			t.Skipf("versitygw not found (run hack/install-s3.sh or set SBX_TEST_S3_BIN): %v", err)
		}
		bin = p
	}
	s := &S3Server{t: t, Bin: bin, Dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = l.Addr().String()
		l.Close()
		s.URL = "http://" + s.Addr
		err = s.Start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// Bucket creates an empty bucket (a directory of the posix backend) and
// returns its name.
func (s *S3Server) Bucket(name string) string {
	s.t.Helper()
	if err := os.Mkdir(filepath.Join(s.Dir, name), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return name
}

// Start (re)starts the server on s.Addr over s.Dir and waits until it
// answers.
func (s *S3Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = &bytes.Buffer{}
	cmd := exec.Command(s.Bin, "--access", S3AccessKey, "--secret", S3SecretKey, "--port", s.Addr, "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Bin, err)
	}
	s.cmd = cmd
	waited := make(chan struct{})
	s.waited = waited
	go func() { cmd.Wait(); close(waited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-waited:
			return fmt.Errorf("versitygw exited at start: %s", s.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-waited
			return fmt.Errorf("versitygw did not answer on %s within 30s: %s", s.Addr, s.out)
		}
	}
}

// Kill stops the server at once, as a crash would.
func (s *S3Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.waited
	s.cmd = nil
}

// DaemonFlags are the sbxd flags that put its blob store in bucket.
func (s *S3Server) DaemonFlags(bucket string) []string {
	return []string{"--blob-store", "s3", "--s3-endpoint", s.URL, "--s3-bucket", bucket,
		"--s3-access-key", S3AccessKey, "--s3-secret-key", S3SecretKey, "--s3-path-style"}
}
