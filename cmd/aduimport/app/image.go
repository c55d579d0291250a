package app

import "github.com/urfave/cli/v2"

// sign, verify and inspect of aduimg images (placeholders until package image's format lands).
func (e *env) signCommand() *cli.Command {
	return &cli.Command{Name: "sign", Usage: "sign a payload into an aduimg image", Description: "EXAMPLE:\n   aduimport sign --key release.pem --version 1.2.0 -o rootfs.aduimg rootfs.ext4"}
}

func (e *env) verifyCommand() *cli.Command {
	return &cli.Command{Name: "verify", Usage: "verify an aduimg image", Description: "EXAMPLE:\n   aduimport verify --pub release.pub.pem rootfs.aduimg"}
}

func (e *env) inspectCommand() *cli.Command {
	return &cli.Command{Name: "inspect", Usage: "show an image's header", Description: "EXAMPLE:\n   aduimport inspect rootfs.aduimg"}
}
