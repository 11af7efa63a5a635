package check

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the reversald repository this module sits in.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// repoFile is the path of a file of the repository, by its repository path.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// tool is the path of a pinned tool (helm, promtool), from scripts/tools.sh: the one place
// that names the versions and installs them (make test installs them before the tests run,
// so here it only answers the path).
func tool(t testing.TB, name string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[name]; ok {
		return p
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(repoFile(t, "scripts/tools.sh"), "path", name)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/tools.sh path %s: %v\n%s\n(make test installs the pinned tools; by hand: scripts/tools.sh install)", name, err, errb.String())
	}
	p := strings.TrimSpace(out.String())
	toolPaths[name] = p
	return p
}

// runTool runs a tool in the repository's root and returns its combined output.
func runTool(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runToolOutput runs a tool in the repository's root and returns its standard output alone
// (helm warns on standard error, e.g. about the chart's link to alerts.yaml); standard error
// is in the error.
func runToolOutput(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(tool(t, name), args...)
	cmd.Dir = repoRoot(t)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// heavyPackages are import paths this module must not build: client-go and controller-runtime
// (what KEDA's Go types pull) take half an hour to compile on a cold 2-core CI machine.
var heavyPackages = []string{"k8s.io/client-go/", "sigs.k8s.io/controller-runtime", "k8s.io/apiextensions-apiserver/", "github.com/kedacore/"}

// TestNoHeavyDependencies: nothing this module's tests build comes from heavyPackages.
func TestNoHeavyDependencies(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", ".")
	cmd.Dir = filepath.Join(repoRoot(t), "deploy", "check")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -test: %v", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 100 {
		t.Fatalf("go list -deps -test listed only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		for _, h := range heavyPackages {
			if strings.HasPrefix(p, h) || p == strings.TrimSuffix(h, "/") {
				t.Errorf("deploy/check builds %s: keep client-go, controller-runtime and KEDA's types out (validate against a CRD schema instead, crd_test.go)", p)
			}
		}
	}
}
