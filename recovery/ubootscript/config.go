package ubootscript

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/internal/tomlsection"
)

// Config is the [uboot] section of the device configuration: the board as its U-Boot sees
// it, which the [slots] section (Linux's view) does not say.
type Config struct {
	// LoadAddr is the RAM address images are loaded to (e.g. the board's kernel_addr_r);
	// required. LoadSize is how many bytes from there are free for an image; required.
	LoadAddr bytesize.Size `toml:"load_addr"`
	LoadSize bytesize.Size `toml:"load_size"`
	// MMCDev is U-Boot's mmc device number of the disk that holds the block slots (and
	// their GPT) and the eMMC boot partitions (default 0).
	MMCDev int `toml:"mmc_dev"`
	// MTDIDs and MTDParts are U-Boot's mtdids and mtdparts variables: which MTD partitions
	// the raw flash slots (by name or number) are, where they are, and on which device. The
	// script sets them before it writes NAND (U-Boot then confines each write to its
	// partition); without them, NAND slots are written by partition name as the board's
	// U-Boot already defines them. NOR slots need them: `sf update` takes offsets.
	MTDIDs   string `toml:"mtdids"`
	MTDParts string `toml:"mtdparts"`
	// UBIPart is the MTD partition U-Boot attaches UBI from (`ubi part NAME`) for UBI slots.
	UBIPart string `toml:"ubi_part"`
	// SFProbe are the arguments of `sf probe` for NOR slots on SPI flash (default "0").
	SFProbe string `toml:"sf_probe"`
	// Env ([uboot.env]) holds variables the fresh environment sets after `env default -a`,
	// before the [bootloader] preset's: what the board's default environment
	// (CONFIG_EXTRA_ENV_SETTINGS) lacks, e.g. the boot script's adu_load and adu_root_A, or
	// a bootcmd. Names of letters, digits and '_'; values without a single quote or a line
	// break; the preset's own variables are refused.
	Env map[string]string `toml:"env"`

	mtd []MTDDevice
	ids []MTDID
}

// ParseConfig parses the [uboot] section of a TOML document (other sections are ignored;
// unknown keys inside it are errors naming the key).
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	_, found, err := tomlsection.Decode(data, "uboot", c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: no [uboot] section (load_addr, load_size and where U-Boot finds the slots)", ErrConfig)
	}
	return c, c.normalize()
}

// LoadConfig reads the [uboot] section of the TOML file path.
func LoadConfig(path string) (*Config, error) {
	return tomlsection.LoadFile(path, ParseConfig)
}

// What the keys may hold: mtdids and mtdparts reach U-Boot in single quotes, ubi_part and
// sf_probe as they are.
var (
	quotedArg  = regexp.MustCompile(`^[^'\\\s]+$`)
	ubiPartArg = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)
	sfProbeArg = regexp.MustCompile(`^[0-9a-fA-Fx:]+( [0-9a-fA-Fx]+){0,2}$`)
)

// normalize fills in the defaults and checks the section.
func (c *Config) normalize() error {
	if c.SFProbe == "" {
		c.SFProbe = "0"
	}
	switch {
	case c.LoadAddr == 0:
		return fmt.Errorf("%w: uboot.load_addr: missing (the RAM address images are loaded to, e.g. the board's kernel_addr_r)", ErrConfig)
	case c.LoadSize == 0:
		return fmt.Errorf("%w: uboot.load_size: missing (the RAM from load_addr on that an image may fill)", ErrConfig)
	case c.LoadAddr > 1<<48 || c.LoadSize > 1<<48:
		return fmt.Errorf("%w: uboot.load_addr %#x, load_size %#x: beyond any board's RAM", ErrConfig, int64(c.LoadAddr), int64(c.LoadSize))
	case c.MMCDev < 0:
		return fmt.Errorf("%w: uboot.mmc_dev = %d", ErrConfig, c.MMCDev)
	}
	for _, k := range []struct {
		key, v string
		re     *regexp.Regexp
	}{{"mtdids", c.MTDIDs, quotedArg}, {"mtdparts", c.MTDParts, quotedArg}, {"ubi_part", c.UBIPart, ubiPartArg}, {"sf_probe", c.SFProbe, sfProbeArg}} {
		if k.v != "" && !k.re.MatchString(k.v) {
			return fmt.Errorf("%w: uboot.%s = %q: U-Boot's shell would read it otherwise (want e.g. %s)", ErrConfig, k.key, k.v,
				map[string]string{"mtdids": "nand0=gpmi-nand", "mtdparts": "mtdparts=gpmi-nand:4m(boot),-(ubi)", "ubi_part": "ubi", "sf_probe": "0:0"}[k.key])
		}
	}
	for k, v := range c.Env {
		if !envName.MatchString(k) || strings.ContainsAny(v, "'\n\r\x00") {
			return fmt.Errorf("%w: uboot.env.%s = %q: a name of letters, digits and '_', a value without a single quote or a line break", ErrConfig, k, v)
		}
	}
	if (c.MTDIDs == "") != (c.MTDParts == "") {
		return fmt.Errorf("%w: uboot.mtdids and uboot.mtdparts go together (U-Boot needs both)", ErrConfig)
	}
	if c.MTDParts == "" {
		return nil
	}
	var err error
	if c.ids, err = ParseMTDIDs(c.MTDIDs); err != nil {
		return fmt.Errorf("%w: uboot.%v", ErrConfig, err)
	}
	if c.mtd, err = ParseMTDParts(c.MTDParts); err != nil {
		return fmt.Errorf("%w: uboot.%v", ErrConfig, err)
	}
	for _, d := range c.mtd {
		if _, ok := c.device(d.ID); !ok {
			return fmt.Errorf("%w: uboot.mtdparts: device %q is not in mtdids %q", ErrConfig, d.ID, c.MTDIDs)
		}
	}
	return nil
}

// device returns the mtdids entry of an mtd-id.
func (c *Config) device(id string) (MTDID, bool) {
	for _, m := range c.ids {
		if m.ID == id {
			return m, true
		}
	}
	return MTDID{}, false
}

// mtdPart finds an MTD partition by name, or by its number in the order mtdparts lists
// them (the kernel numbers them so when the definition is its only source).
func (c *Config) mtdPart(name string, number int) (MTDID, MTDPart, bool) {
	n := 0
	for _, d := range c.mtd {
		for _, p := range d.Parts {
			if p.Name == name || number >= 0 && n == number {
				m, _ := c.device(d.ID)
				return m, p, true
			}
			n++
		}
	}
	return MTDID{}, MTDPart{}, false
}
