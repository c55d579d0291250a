package devicesim

import "github.com/aduflash/aduflash/internal/powersim"

// ErrPowerCut is what every operation returns once the simulated power is gone.
var ErrPowerCut = powersim.ErrPowerCut

// Power is the board's power switch: it counts the board's mutating operations (flash
// program/erase/sync, environment writes, journal file operations) and, once armed with
// CutAfter, fails every operation after the given number; the board is dead until Run powers
// it on again (a reboot).
type Power = powersim.Power
