package storagetest

import "syscall"

// sysProcAttr kills the server when the thread that started it exits, which
// (see startProcess) is when the test binary exits.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
