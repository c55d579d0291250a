// Package slotstest holds the device-config fixtures that the tests of several packages
// share: the [[slots.slot]] entries of the usual two-bank board, whose root file systems
// are the GPT partitions labelled rootfs_a and rootfs_b.
package slotstest

// RootfsA is the slot entry of bank A's root file system: the GPT partition rootfs_a.
const RootfsA = `[[slots.slot]]
class = "rootfs"
bank = "A"
type = "block"
partlabel = "rootfs_a"
`

// RootfsB is the slot entry of bank B's root file system: the GPT partition rootfs_b.
const RootfsB = `[[slots.slot]]
class = "rootfs"
bank = "B"
type = "block"
partlabel = "rootfs_b"
`
