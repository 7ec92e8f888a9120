package launcher

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet/internal/servertest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopMoto()
	servertest.RemoveBinary()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}
