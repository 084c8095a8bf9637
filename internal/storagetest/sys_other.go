//go:build !linux

package storagetest

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal, so a shared
// server outlives its test binary (it holds only a scratch directory and a
// loopback port; runDir removes the directories of finished binaries).
func sysProcAttr() *syscall.SysProcAttr { return nil }
