package watchdog

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestSystemdNotifyAbstract(t *testing.T) {
	name := fmt.Sprintf("@aduflash-watchdog-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn := listen(t, name)
	s, err := NewSystemd(name, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	exerciseNotify(t, s, conn)
}
