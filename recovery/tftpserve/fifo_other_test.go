//go:build !unix

package tftpserve

import "errors"

func mkfifo(string) error { return errors.ErrUnsupported }
