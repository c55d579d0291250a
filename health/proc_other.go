//go:build !linux

package health

import "os/exec"

// setProcessGroup does nothing outside Linux: descendants are not tracked.
func setProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the command's process only.
func killProcessGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Kill()
}
