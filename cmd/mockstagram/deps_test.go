package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode: test support (the testing package, testify
// and the module's own test-support packages) stays out of the production
// binary; they are imported only from _test.go files.
func TestBinaryLinksNoTestCode(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	forbidden := func(p string) bool {
		switch {
		case p == "testing", strings.HasPrefix(p, "testing/"),
			strings.HasPrefix(p, "github.com/stretchr/"),
			p == "net/http/httptest":
			return true
		}
		for _, support := range []string{"store/storetest", "store/postgres/pgtest", "broker/brokertest", "broker/kafkatest", "mockstagramapi/apitest"} {
			if p == "github.com/mockstagram/pipeline/"+support {
				return true
			}
		}
		return false
	}
	var linked bool
	for _, p := range deps {
		if forbidden(p) {
			t.Errorf("the binary links %s", p)
		}
		linked = linked || p == "github.com/mockstagram/pipeline/cli"
	}
	if !linked {
		t.Fatalf("go list -deps did not list the binary's packages: %q", deps)
	}
}
