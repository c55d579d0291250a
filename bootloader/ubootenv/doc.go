// Package ubootenv reads and writes the U-Boot environment in the byte format shared by
// U-Boot, libubootenv (fw_printenv/fw_setenv) and mkenvimage.
//
// Scope:
//   - the blob format: single [crc32][data] and redundant [crc32][flags][data], CRC-32 IEEE
//     over the whole data area including padding, little- or big-endian CRC, 0x00 or 0xFF
//     padding (Encode, Decode);
//   - choosing the current copy of a redundant env exactly as U-Boot does (Select), with the
//     serial-counter flag scheme (NAND, MMC, UBI, files) and the boolean ACTIVE/OBSOLETE
//     scheme of CFI NOR flash;
//   - transactions (Env.Set): a set of changes applied to the current env and written as ONE
//     copy — the non-current copy of a redundant env, or the only copy in place; with no
//     valid copy, only over blank copies (all 0xff or all 0x00) unless told to overwrite
//     (ErrNotBlank), since a wrong size or offset in the config misreads a good env as corrupt;
//   - fw_env.config in its legacy line form and libubootenv's YAML form (ParseConfig,
//     ParseConfigYAML, LoadConfig);
//   - storage backends behind the small Storage interface: files and block devices at an
//     offset (negative offsets count from the end), eMMC boot partitions (force_ro cleared and
//     restored), raw MTD through the MTD interface (NOR and NAND with bad-block skipping) and
//     UBI volumes through the UBIVolume interface;
//   - the flock(2) lock file shared with libubootenv around read-modify-write.
//
// Opening raw MTD and UBI character devices by name (ioctls) is not done here: callers pass
// an MTD or UBIVolume implementation (package mtd) to NewMTDStorage or NewUBIStorage. Open
// handles files and block devices (including mmcblkXbootY) from a Config.
//
// The package never logs and keeps no package-level mutable state.
package ubootenv
