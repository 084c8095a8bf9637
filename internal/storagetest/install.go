package storagetest

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

//go:embed azurite/package.json azurite/package-lock.json
var azuriteFiles embed.FS

// cacheRoot is where servers are built and installed, kept across runs.
func cacheRoot() string {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "convsync", "testbin")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// goTool finds the go command: `go test` puts its own GOROOT/bin first on PATH.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if p := "/usr/local/go/bin/go"; exists(p) {
		return p, nil
	}
	return "", prereq("no go command on PATH to build the test servers with")
}

// goInstall builds pkg@version with the Go toolchain (sources from the Go
// module proxy, pinned by the module's own go.sum) into the cache, once per
// machine, and returns the binary's path.
func goInstall(logf func(string, ...any), pkg, version string) (string, error) {
	name := path.Base(pkg)
	dir := filepath.Join(cacheRoot(), fmt.Sprintf("%s-%s-%s-%s", name, version, runtime.GOOS, runtime.GOARCH))
	bin := filepath.Join(dir, name)
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if exists(bin) {
		return bin, nil
	}
	goCmd, err := goTool()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cacheRoot(), 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if exists(bin) { // built by another test binary while we waited
		return bin, nil
	}
	tmp, err := os.MkdirTemp(cacheRoot(), ".build-"+name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	logf("storagetest: building %s@%s into %s (first run on this machine only)", pkg, version, dir)
	start := time.Now()
	cmd := exec.Command(goCmd, "install", "-trimpath", "-ldflags=-s -w", pkg+"@"+version)
	cmd.Dir = tmp // outside any module: go install pkg@version uses the server's own go.mod
	cmd.Env = append(filterEnv(os.Environ(), "GOFLAGS", "GOWORK", "GOBIN", "GOOS", "GOARCH", "CGO_ENABLED", "GOTOOLCHAIN", "GO111MODULE"),
		"GOFLAGS=", "GOWORK=off", "GOBIN="+tmp, "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GO111MODULE=on")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", prereq("go install %s@%s failed (%v):\n%s", pkg, version, err, lastLines(string(out), 30))
	}
	built := filepath.Join(tmp, filepath.Base(bin))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(built, bin); err != nil {
		return "", err
	}
	logf("storagetest: built %s@%s in %s", name, version, time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// npmInstallAzurite installs the pinned Azurite (azurite/package-lock.json,
// embedded) with `npm ci` into the cache, once per machine, and returns the
// path of its blob service entry point.
func npmInstallAzurite(logf func(string, ...any)) (node, mainJS string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", prereq("no node on PATH to run Azurite with")
	}
	lock, err := azuriteFiles.ReadFile("azurite/package-lock.json")
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(cacheRoot(), "azurite-"+AzuriteVersion+"-"+hex.EncodeToString(sum[:6]))
	mainJS = filepath.Join(dir, "node_modules", "azurite", "dist", "src", "blob", "main.js")
	if exists(mainJS) {
		return node, mainJS, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "", prereq("no npm on PATH to install Azurite with")
	}
	if err := os.MkdirAll(cacheRoot(), 0o755); err != nil {
		return "", "", err
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", "", err
	}
	defer unlock()
	if exists(mainJS) {
		return node, mainJS, nil
	}
	tmp, err := os.MkdirTemp(cacheRoot(), ".npm-azurite-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	err = fs.WalkDir(azuriteFiles, "azurite", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := azuriteFiles.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, path.Base(p)), b, 0o644)
	})
	if err != nil {
		return "", "", err
	}

	logf("storagetest: installing azurite@%s with npm ci into %s (first run on this machine only)", AzuriteVersion, dir)
	start := time.Now()
	cmd := exec.Command(npm, "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "NODE_ENV=production")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", "", prereq("npm ci azurite@%s failed (%v):\n%s", AzuriteVersion, err, lastLines(string(out), 30))
	}
	if !exists(filepath.Join(tmp, "node_modules", "azurite", "dist", "src", "blob", "main.js")) {
		return "", "", errors.New("npm ci succeeded but azurite's blob entry point is missing")
	}
	_ = os.RemoveAll(dir) // a partial directory from an interrupted rename, if any
	if err := os.Rename(tmp, dir); err != nil {
		return "", "", err
	}
	logf("storagetest: installed azurite@%s in %s", AzuriteVersion, time.Since(start).Round(100*time.Millisecond))
	return node, mainJS, nil
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
