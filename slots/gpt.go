package slots

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aduflash/aduflash/internal/gptdisk"
)

// byGPT finds a GPT partition by name (label) or unique GUID (uuid) without udev: busybox
// mdev systems have no /dev/disk/by-partlabel. It reads the partition table of every whole
// disk in sysfs (<sysfs>/block) with u-root's GPT reader (internal/gptdisk) and returns the
// device node of the partition whose sysfs "partition" number is the entry's. A name or GUID
// found on two disks is an error: it names no one place.
func (l *Layout) byGPT(label, uuid string) (string, error) {
	what := "PARTLABEL " + label
	if uuid != "" {
		what = "PARTUUID " + uuid
	}
	disks, err := os.ReadDir(filepath.Join(l.Env.sysfs(), "block"))
	if err != nil {
		return "", fmt.Errorf("%w: %s: no /dev/disk links and no block devices in sysfs: %v", ErrUnknownSlot, what, err)
	}
	var found []string
	for _, d := range disks {
		p, ok := l.partitionOn(d.Name(), label, uuid)
		if ok {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s: on no disk's GPT (%s has no /dev/disk links)", ErrUnknownSlot, what, l.Env.dev())
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %s names partitions on two disks: %s", ErrUnknownSlot, what, strings.Join(found, ", "))
}

// partitionOn returns the device node of the partition on disk whose GPT entry has the name
// or GUID, when the disk has a GPT with it.
func (l *Layout) partitionOn(disk, label, uuid string) (string, bool) {
	if strings.HasPrefix(disk, "ram") || strings.HasPrefix(disk, "zram") {
		return "", false
	}
	f, err := os.Open(filepath.Join(l.Env.dev(), disk))
	if err != nil {
		return "", false
	}
	tab, err := gptdisk.Read(f)
	f.Close()
	if err != nil {
		return "", false
	}
	var p gptdisk.Partition
	if uuid != "" {
		p, err = tab.ByUUID(uuid)
	} else {
		p, err = tab.ByName(label)
	}
	if err != nil {
		return "", false
	}
	name, err := partitionNode(filepath.Join(l.Env.sysfs(), "block", disk), p.Number)
	if err != nil {
		return "", false
	}
	return filepath.Join(l.Env.dev(), name), true
}

// partitionNode returns the name of the partition of number n in a disk's sysfs directory
// (vda1, mmcblk0p2, nvme0n1p3): the child whose "partition" file holds n.
func partitionNode(diskDir string, n int) (string, error) {
	ents, err := os.ReadDir(diskDir)
	if err != nil {
		return "", err
	}
	want := fmt.Sprint(n)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(diskDir, e.Name(), "partition"))
		if err == nil && strings.TrimSpace(string(b)) == want {
			return e.Name(), nil
		}
	}
	return "", fs.ErrNotExist
}
