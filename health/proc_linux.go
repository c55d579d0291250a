package health

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes the command the leader of a new process group so that a
// timeout can kill everything it started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup sends SIGKILL to the command's process group. It is only called
// by os/exec before the command has been waited for, so the group id (the leader's
// pid) cannot have been reused.
func killProcessGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}
