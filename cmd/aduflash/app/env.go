package app

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// defaultEnvConfig is where fw_printenv and fw_setenv look for their config.
const defaultEnvConfig = "/etc/fw_env.config"

func (e *env) envCommand() *cli.Command {
	return &cli.Command{
		Name:  "env",
		Usage: "read, write, build and check the U-Boot environment (fw_printenv, fw_setenv, mkenvimage)",
		Description: `The U-Boot environment described by fw_env.config (legacy lines or libubootenv's YAML),
in files, block devices, eMMC boot partitions, raw MTD (/dev/mtdN) and UBI volumes
(/dev/ubiX_Y, /dev/ubiX:NAME, /dev/mtdN:NAME with MTD N attached). The byte format is the one
of U-Boot, libubootenv and mkenvimage, so either side can read what the other wrote.

Exit codes: 0 ok; 1 invalid input (bad config, variable not defined, invalid name or value,
no valid env copy, env too large) or, for doctor, problems found; 2 usage error; 3 I/O error
(device cannot be opened or read, lock file).

EXAMPLE:
   aduflash env print
   aduflash env set bootcount=0 upgrade_available=0
   aduflash env mkimage -s 0x4000 -r -o uboot.env env.txt
   aduflash env doctor -c /etc/fw_env.config`,
		Subcommands: []*cli.Command{
			e.envPrintCommand(),
			e.envSetCommand(),
			e.envMkimageCommand(),
			e.envDoctorCommand(),
		},
	}
}

// envConfigFlags are the flags every command reading fw_env.config shares.
func envConfigFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: defaultEnvConfig, Usage: "fw_env.config `FILE` (legacy or YAML form, detected)", TakesFile: true},
		&cli.StringFlag{Name: "namespace", Aliases: []string{"m"}, Usage: "`NAMESPACE` of a YAML config (default: the first)"},
		// Test and offline hooks: the lock file ("" disables locking) and the roots that
		// MTD and UBI look-ups use.
		&cli.StringFlag{Name: "lock", Hidden: true, Value: "\x00"},
		&cli.StringFlag{Name: "sysfs-root", Hidden: true},
		&cli.StringFlag{Name: "dev-root", Hidden: true},
	}
}

func (e *env) envPrintCommand() *cli.Command {
	return &cli.Command{
		Name:      "print",
		Usage:     "print variables like fw_printenv: all of them as name=value, or the named ones",
		ArgsUsage: "[NAME...]",
		Description: `Without NAME, every variable of the current copy is printed as name=value, in stored
order (sorted by name in anything U-Boot, libubootenv or aduflash wrote). With NAMEs, those
variables; -n with exactly one NAME prints only its value. A NAME that is not defined is
reported on stderr as fw_printenv does ('## Error: "NAME" not defined') and the exit code is 1
(the defined ones are still printed).

With no valid copy (blank or corrupt area) printing fails with exit 1 and the error says what
env doctor finds about each copy, unless -f gives a default environment (fw_printenv -f
format: name=value lines), which is then printed with a warning on stderr.

EXAMPLE:
   aduflash env print
   aduflash env print -n bootcount
   aduflash env print -c /etc/fw_env.config.yaml -m uboot bootcmd bootargs`,
		Flags: append(envConfigFlags(),
			&cli.BoolFlag{Name: "noheader", Aliases: []string{"n"}, Usage: "print only the value of the one NAME given"},
			&cli.StringFlag{Name: "defenv", Aliases: []string{"f"}, Usage: "default environment `FILE` used when no copy is valid", TakesFile: true},
		),
		Action: e.envPrint,
	}
}

func (e *env) envSetCommand() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "set and delete variables like fw_setenv, all in one transaction",
		ArgsUsage: "NAME=VALUE... | NAME [VALUE...]",
		Description: `Every change is applied to the current copy and written as ONE new copy: the other copy
of a redundant env (with the next flags value), or the only copy in place. An empty value
deletes the variable.

Arguments: when every argument contains '=', each is NAME=VALUE. Otherwise they are read as
fw_setenv's: NAME followed by the value words joined by single spaces, and NAME alone deletes
NAME. --script FILE ('-' for stdin) reads fw_setenv -s lines instead: name=value, an empty
value deletes, lines starting with '#', empty lines and lines without '=' are skipped.

On a blank area (every copy all 0xff or all 0x00) the transaction starts from an empty
environment, or from the default environment given with -f (name=value lines), and writes a
valid first copy; a warning says so on stderr. An area with no valid copy that is not blank
is refused (exit 1, nothing written): it often holds a good env that fw_env.config misreads
(wrong size, offset or header), and the error says what env doctor finds there. --force
writes over it anyway, and what was there is lost.

EXAMPLE:
   aduflash env set bootcount=0 upgrade_available=0
   aduflash env set bootargs console=ttyS0,115200 root=/dev/mmcblk0p2
   aduflash env set upgrade_available
   aduflash env set --script - < changes.txt
   aduflash env set -f /etc/u-boot-initial-env -c fw_env.config serial=1234`,
		Flags: append(envConfigFlags(),
			&cli.StringFlag{Name: "script", Aliases: []string{"s"}, Usage: "read name=value changes from `FILE` ('-' = stdin)", TakesFile: true},
			&cli.StringFlag{Name: "defenv", Aliases: []string{"f"}, Usage: "default environment `FILE` to start from when no copy is valid", TakesFile: true},
			&cli.BoolFlag{Name: "force", Usage: "write even when no copy is valid and the area is not blank (what is there is lost)"},
		),
		Action: e.envSet,
	}
}

// envOpen loads the config and opens the env with opts filled in from it.
func envOpen(c *cli.Context, opts ubootenv.Options) (*ubootenv.Env, func(), error) {
	cfg, err := ubootenv.LoadConfig(c.String("config"), c.String("namespace"))
	if err != nil {
		return nil, nil, err
	}
	opts.Format.Size = int(cfg.EnvSize())
	opts.LockPath = cfg.LockFile
	if opts.LockPath == "" {
		opts.LockPath = ubootenv.DefaultLockPath
	}
	if l := c.String("lock"); l != "\x00" {
		opts.LockPath = l
	}
	for _, w := range cfg.WriteList {
		opts.WriteList = append(opts.WriteList, w.Name)
	}
	roots := flagRoots(c)
	var storages []ubootenv.Storage
	var closers []func()
	closeAll := func() {
		for _, f := range closers {
			f()
		}
	}
	for i, d := range cfg.Devices {
		st, cl, err := openEnvStorage(d, roots)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%s:%d: copy %d: %w", cfg.File, d.Line, i+1, err)
		}
		storages = append(storages, st)
		closers = append(closers, cl)
	}
	ue, err := ubootenv.New(opts, storages...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return ue, closeAll, nil
}

// loadDefaults reads a default environment file (-f), or returns nil when none is given.
func loadDefaults(c *cli.Context) ([]ubootenv.Var, bool, error) {
	p := c.String("defenv")
	if p == "" {
		return nil, false, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, false, err
	}
	vars, err := ubootenv.ParseDefaults(data)
	if err != nil {
		return nil, false, exitcode.InvalidInput(fmt.Errorf("%s: %w", p, err))
	}
	return vars, true, nil
}

func (e *env) envPrint(c *cli.Context) error {
	names := c.Args().Slice()
	if c.Bool("noheader") && len(names) != 1 {
		return exitcode.Usagef("%s: -n needs exactly one NAME, got %d", c.Command.HelpName, len(names))
	}
	defs, hasDefs, err := loadDefaults(c)
	if err != nil {
		return err
	}
	ue, closeAll, err := envOpen(c, ubootenv.Options{Defaults: defs, HasDefaults: hasDefs})
	if err != nil {
		return explainNoValidCopy(c, err)
	}
	defer closeAll()
	if ue.Info().UsingDefaults {
		fmt.Fprintf(e.stderr, "%s: warning: no valid environment copy, printing the default environment of %s\n", c.App.Name, c.String("defenv"))
	}
	w := bufio.NewWriter(e.stdout)
	if len(names) == 0 {
		for _, v := range ue.All() {
			fmt.Fprintf(w, "%s=%s\n", v.Name, v.Value)
		}
		return w.Flush()
	}
	var missing []string
	for _, n := range names {
		v, ok := ue.Get(n)
		switch {
		case !ok:
			missing = append(missing, n)
			// Printed in place, like fw_printenv, after what came before.
			w.Flush()
			fmt.Fprintf(e.stderr, "## Error: %q not defined\n", n)
		case c.Bool("noheader"):
			fmt.Fprintf(w, "%s\n", v)
		default:
			fmt.Fprintf(w, "%s=%s\n", n, v)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(missing) > 0 {
		// Already reported, one line per name.
		return cliapp.Silent(exitcode.InvalidInput(fmt.Errorf("not defined: %s", strings.Join(missing, ", "))))
	}
	return nil
}

// setChanges turns set's arguments into changes: NAME=VALUE each when every argument has
// '=', else fw_setenv's NAME [VALUE...].
func setChanges(args []string) []ubootenv.Change {
	all := true
	for _, a := range args {
		if !strings.Contains(a, "=") {
			all = false
		}
	}
	if all {
		var ch []ubootenv.Change
		for _, a := range args {
			n, v, _ := strings.Cut(a, "=")
			ch = append(ch, ubootenv.Change{Name: n, Value: v})
		}
		return ch
	}
	return []ubootenv.Change{{Name: args[0], Value: strings.Join(args[1:], " ")}}
}

// parseScript reads fw_setenv -s lines as libubootenv does: trailing CR/LF stripped, empty
// lines and '#' lines skipped, lines without '=' skipped, an empty value deletes.
func parseScript(r io.Reader) ([]ubootenv.Change, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var ch []ubootenv.Change
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		n, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		ch = append(ch, ubootenv.Change{Name: n, Value: v})
	}
	return ch, nil
}

func (e *env) envSet(c *cli.Context) error {
	script := c.String("script")
	var changes []ubootenv.Change
	switch {
	case script != "" && c.NArg() > 0:
		return exitcode.Usagef("%s: give either --script or NAME=VALUE arguments, not both", c.Command.HelpName)
	case script != "":
		var r io.Reader = os.Stdin
		if script != "-" {
			f, err := os.Open(script)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		var err error
		if changes, err = parseScript(r); err != nil {
			return err
		}
	case c.NArg() == 0:
		return exitcode.Usagef("%s: expected NAME=VALUE... or NAME [VALUE...] (or --script FILE)", c.Command.HelpName)
	default:
		changes = setChanges(c.Args().Slice())
	}
	for _, ch := range changes {
		if err := ubootenv.CheckName(ch.Name); err != nil {
			return exitcode.InvalidInput(fmt.Errorf("%q: %w", ch.Name, err))
		}
		if err := ubootenv.CheckValue(ch.Name, ch.Value); err != nil {
			return exitcode.InvalidInput(fmt.Errorf("%q: %w", ch.Name, err))
		}
	}
	defs, _, err := loadDefaults(c)
	if err != nil {
		return err
	}
	// A blank area starts from the defaults, or from nothing; so does any other area with
	// no valid copy when --force says to overwrite it (Set refuses it otherwise).
	ue, closeAll, err := envOpen(c, ubootenv.Options{Defaults: defs, HasDefaults: true, OverwriteInvalid: c.Bool("force")})
	if err != nil {
		return err
	}
	defer closeAll()
	before := ue.Info()
	if len(changes) == 0 && !before.UsingDefaults {
		return nil
	}
	if err := ue.Set(changes...); err != nil {
		return explainNoValidCopy(c, err)
	}
	if before.UsingDefaults {
		e.warnFirstCopy(c, before)
	}
	return nil
}

// warnFirstCopy says that set wrote a first valid copy, and what over.
func (e *env) warnFirstCopy(c *cli.Context, in ubootenv.Info) {
	from := "an empty environment"
	if p := c.String("defenv"); p != "" {
		from = "the default environment of " + p
	}
	over := "no valid environment copy"
	for _, cp := range in.Copies {
		if !cp.Blank {
			over = "no valid environment copy and the area is not blank: --force overwrote it"
		}
	}
	fmt.Fprintf(e.stderr, "%s: warning: %s, starting from %s\n", c.App.Name, over, from)
}
