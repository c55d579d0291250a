package slots

import (
	"errors"
	"strings"
	"testing"
)

func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig("../examples/aduagent.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Slots) != 7 || c.Active != ActiveCmdline || c.SyncInterval != 4<<20 || c.ReserveBlocks != 8 {
		t.Fatalf("config %+v", c)
	}
	if c.Spare("kernel") != SpareCopy || c.Spare("firmware") != SpareKeep || c.Spare("data") != SpareShared {
		t.Fatalf("spare: kernel %q, firmware %q, data %q", c.Spare("kernel"), c.Spare("firmware"), c.Spare("data"))
	}
	s, err := c.Slot("B/kernel")
	if err != nil || s.Name != "kernel-b" || s.Size != 16<<20 || s.EraseSize != 128<<10 {
		t.Fatalf("B/kernel: %+v %v", s, err)
	}
	if s, err := c.Slot("mcu-b"); err != nil || s.Offset != 256<<10 || s.MCUbootAlign != 4 {
		t.Fatalf("mcu-b: %+v %v", s, err)
	}
	if m := c.MCU("motor-fw"); m == nil || m.Name != "motor" || m.Transport != MCUSerial || m.Port != "/dev/ttyACM0" || m.SlotSize != 256<<10 || m.LineSize != 128 {
		t.Fatalf("the example's MCU: %+v", m)
	}
}

func TestConfigErrors(t *testing.T) {
	base := "[agent]\nanything = 1\n[other.deep]\nx = [1]\n"
	ok := base + `[slots]
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = "/data/a.img"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "file"
path = "/data/b.img"
`
	c, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatalf("other sections must be ignored: %v", err)
	}
	if got := strings.Join(c.Banks, ","); got != "A,B" || c.Slots[1].Name != "rootfs-b" || c.CmdlineKey != "adu.slot" ||
		c.CmdlineFile != "/proc/cmdline" {
		t.Fatalf("defaults: %+v", c)
	}
	for _, tc := range []struct{ doc, want string }{
		{ok + "colour = 1\n", "slots.slot.colour"},
		{strings.Replace(ok, "[slots]\n", "[slots]\nbogus = true\n", 1), "slots.bogus"},
		{base, "no [slots] section"},
		{strings.Replace(ok, `type = "file"`, `type = "floppy"`, 1), `unknown type "floppy"`},
		{strings.ReplaceAll(ok, `class = "rootfs"`, `class = "root\nfs"`), `class "root\nfs": want a name`},
		{strings.Replace(ok, `bank = "B"`, `bank = "A"`, 1), "already has a rootfs slot"},
		{ok + "[[slots.slot]]\nclass = \"kernel\"\nbank = \"A\"\ntype = \"ubi\"\nubi_volume = \"k\"\n", `class "kernel" has no slot in bank B`},
		{ok + "[[slots.slot]]\nclass = \"kernel\"\nbank = \"A\"\ntype = \"block\"\npath = \"/dev/x\"\npartlabel = \"y\"\n", "exactly one of path, partlabel, partuuid"},
		{strings.Replace(ok, "[slots]\n", "[slots]\nsync_interval = \"lots\"\n", 1), `bad size "lots"`},
		{strings.Replace(ok, "[slots]\n", "[slots]\nactive = \"magic\"\n", 1), `active = "magic"`},
	} {
		_, err := ParseConfig([]byte(tc.doc))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an ErrConfig naming %q, got %v", tc.want, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "0x20000": 0x20000, "128KiB": 128 << 10, "64 MiB": 64 << 20, "1G": 1 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "-1", "12XB", "1.5MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// [slots.class.NAME] tables say what a deployment does with the spare bank's slot of a class
// it does not write: copy it from the running bank (the default), keep it, or (shared) there
// is one slot without a bank for every bank.
func TestClassTables(t *testing.T) {
	doc := `[slots]
[slots.class.boot]
spare = "keep"
[slots.class.data]
spare = "shared"
` + abFileSlots + `[[slots.slot]]
class = "boot"
bank = "A"
type = "file"
path = "/boot-a"
[[slots.slot]]
class = "boot"
bank = "B"
type = "file"
path = "/boot-b"
[[slots.slot]]
class = "data"
type = "file"
path = "/data"
`
	c, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spare("rootfs") != SpareCopy || c.Spare("boot") != SpareKeep || c.Spare("data") != SpareShared {
		t.Fatalf("spare: rootfs %q, boot %q, data %q", c.Spare("rootfs"), c.Spare("boot"), c.Spare("data"))
	}
	if got := strings.Join(c.Banks, ","); got != "A,B" {
		t.Fatalf("banks %q", got)
	}
	if got := strings.Join(c.BankedClasses(), ","); got != "rootfs,boot" {
		t.Fatalf("banked classes %q", got)
	}
	if s, err := c.Slot("data"); err != nil || s.Bank != "" {
		t.Fatalf("the shared slot: %+v, %v", s, err)
	}
	if _, err := c.Slot("B/data"); !errors.Is(err, ErrUnknownSlot) {
		t.Fatalf("B/data: %v", err)
	}
	if ss := c.ForClass("data"); len(ss) != 1 || ss[0].Name != "data" {
		t.Fatalf("ForClass(data): %v", ss)
	}
	for _, tc := range []struct{ doc, want string }{
		{strings.Replace(doc, `spare = "keep"`, `spare = "mirror"`, 1), `slots.class.boot.spare = "mirror": want "copy", "keep" or "shared"`},
		{strings.Replace(doc, `spare = "keep"`, "spare = \"keep\"\ncolour = 1", 1), "slots.class.boot.colour"},
		{doc + "[slots.class.dtb]\nspare = \"keep\"\n", `slots.class.dtb: no slot has class "dtb"`},
		{strings.Replace(doc, "class = \"data\"\n", "class = \"data\"\nbank = \"A\"\n", 1), "class data is shared"},
		{doc + "[[slots.slot]]\nclass = \"data\"\ntype = \"file\"\npath = \"/data2\"\n", "it has one slot, not two"},
		{strings.Replace(doc, "[slots.class.data]\nspare = \"shared\"\n", "", 1), `bank "": want a bank name such as A (or, for one slot that every bank uses, slots.class.data.spare = "shared")`},
	} {
		_, err := ParseConfig([]byte(tc.doc))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an ErrConfig naming %q, got %v", tc.want, err)
		}
	}
}
