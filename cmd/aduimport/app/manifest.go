package app

import "github.com/urfave/cli/v2"

// manifestCommand: owned by the manifestgen work (placeholder until it lands).
func (e *env) manifestCommand() *cli.Command {
	return &cli.Command{
		Name:        "manifest",
		Usage:       "create and check ADU import manifests (v5)",
		Description: "EXAMPLE:\n   aduimport manifest check contoso.toaster.1.0.importmanifest.json",
		Subcommands: []*cli.Command{},
	}
}
