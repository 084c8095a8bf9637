package storagetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// process is a server started by this package. On Linux it is killed when the
// test binary exits (Pdeathsig on a locked thread), so a shared server lives
// exactly as long as the test binary that started it.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done closes
}

// startProcess starts argv with a clean environment (env only, plus what the
// platform needs) in dir.
func startProcess(name string, argv, env []string, dir string) (*process, error) {
	p := &process{name: name, out: &tail{max: 64 << 10}, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child
		// exits, so fork from a locked thread that lives until the child does.
		runtime.LockOSThread()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Dir = dir
		cmd.Stdout = p.out
		cmd.Stderr = p.out
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			p.err = err
			close(p.done)
			started <- err
			return
		}
		p.cmd = cmd
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// kill stops the process and waits for it.
func (p *process) kill() {
	if p == nil || p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitReady polls ready until it succeeds, the process exits, or timeout.
func (p *process) waitReady(timeout time.Duration, ready func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before answering (%v); its output:\n%s", p.name, p.err, p.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("%s did not answer within %s (last: %v); its output:\n%s", p.name, timeout, last, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startServer starts a server on a free loopback port and waits until it
// answers, retrying with another port if the process dies (say, the port was
// taken in between).
func startServer(name string, timeout time.Duration, launch func(port int) (*process, error), ready func(ctx context.Context, endpoint string) error) (*process, string, error) {
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
		p, err := launch(port)
		if err != nil {
			return nil, "", err
		}
		err = p.waitReady(timeout, func(ctx context.Context) error { return ready(ctx, endpoint) })
		if err == nil {
			return p, endpoint, nil
		}
		p.kill()
		lastErr = err
	}
	return nil, "", lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// httpAnswers is a readiness check: any HTTP response at all.
func httpAnswers(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// serverEnv is the environment servers run with: nothing of the caller's
// beyond what finding programs and temp files needs, so that no developer
// setting (VGW_*, FAKE_GCS_*, AZURITE_*, proxies) changes them.
func serverEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	if runtime.GOOS == "windows" {
		env = append(env, "SYSTEMROOT="+os.Getenv("SYSTEMROOT"))
	}
	return append(env, extra...)
}

// runDir makes a scratch directory for one server of this test binary, under
// os.TempDir()/convsync-storagetest, and first removes those left by test
// binaries that are gone.
func runDir(name string) (string, error) {
	base := filepath.Join(os.TempDir(), "convsync-storagetest")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		if pid, err := strconv.Atoi(pidStr); ok && err == nil && pid != os.Getpid() && !processAlive(pid) {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	return os.MkdirTemp(base, fmt.Sprintf("%d-%s-", os.Getpid(), name))
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
