// Package faultpoint names the steps of convsync's publish at which
// tests inject faults: an error, or the death of the process. A step is
// hit through Hit; nothing happens unless a test armed it, with Arm in the
// same process or with the CONVSYNC_TEST_FAULT environment variable for a
// real convsync process:
//
//	CONVSYNC_TEST_FAULT=parquet:users        the step fails with an error
//	CONVSYNC_TEST_FAULT=parquet:users:kill   the process kills itself (SIGKILL) there
//
// It exists so that tests can prove that a publish interrupted at any step
// leaves every output consistent; it changes nothing when unarmed.
package faultpoint

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// EnvVar arms a fault in a real process.
const EnvVar = "CONVSYNC_TEST_FAULT"

// ErrInjected is wrapped by the error of an armed step.
var ErrInjected = errors.New("injected fault")

var (
	mu    sync.Mutex
	armed = map[string]bool{} // step -> kill
)

// Arm makes step fail (or, with kill, kill the process) until Disarm.
func Arm(step string, kill bool) {
	mu.Lock()
	armed[step] = kill
	mu.Unlock()
}

// Disarm clears every armed step.
func Disarm() {
	mu.Lock()
	armed = map[string]bool{}
	mu.Unlock()
}

// Hit returns an error wrapping ErrInjected when step is armed, or kills
// the process when it is armed so; otherwise nil.
func Hit(step string) error {
	mu.Lock()
	kill, ok := armed[step]
	mu.Unlock()
	if !ok {
		if v := os.Getenv(EnvVar); v != "" {
			var name string
			name, kill = strings.CutSuffix(v, ":kill")
			ok = name == step
		}
	}
	if !ok {
		return nil
	}
	if kill {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not delivered synchronously
	}
	return fmt.Errorf("%w at %s", ErrInjected, step)
}
