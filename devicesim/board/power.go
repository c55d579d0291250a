package board

import "github.com/aduflash/aduflash/internal/powersim"

// ErrPowerCut is what every operation returns once the simulated power is gone.
var ErrPowerCut = powersim.ErrPowerCut

// Power is the board's power switch: it counts the board's mutating operations (flash page
// programs, erases, bad-block marks and syncs; block-device sector writes and syncs;
// journal file operations; U-Boot's and the agent's environment writes are flash or sector
// operations too) and, armed with CutAt or CutAfter, fails the chosen one and every one
// after it; the board is dead until PowerOn switches it on again.
type Power = powersim.Power

// Tear says how the operation the power fails at ends: not applied (TearNone) or partly
// applied (TearPartial: a page or NOR program up to a seeded byte, a partial erase, a
// sector or journal file write of a prefix).
type Tear = powersim.Tear

// How a cut operation ends.
const (
	TearNone    = powersim.TearNone
	TearPartial = powersim.TearPartial
)

// Op is one operation the power switch counted: its kind and its medium.
type Op = powersim.Op
