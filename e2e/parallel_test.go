package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// Every test in this module runs in parallel with the others (CI runs four at a
// time, README.md): a test that does not call t.Parallel() runs alone, before all of
// them, and its whole time adds to CI's. This reads the module's test files and
// fails naming each top-level test whose body never calls t.Parallel().
func TestEveryTestIsParallel(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	tests := 0
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			tests++
			if !callsParallel(fn.Body) && !serialTests[fn.Name.Name] {
				t.Errorf("%s: %s does not call t.Parallel(); add it as its first statement (see README.md)", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if tests < 50 {
		t.Fatalf("found %d tests in %d files, want the module's 50 or more: is the test reading the wrong directory?", tests, len(files))
	}
}

// serialTests run alone, before the parallel ones, each for the reason in its comment.
var serialTests = map[string]bool{"TestMembershipParityWithEtcd": true}

// callsParallel reports whether body's own statements (not a subtest's) include a
// call to t.Parallel().
func callsParallel(body *ast.BlockStmt) bool {
	for _, stmt := range body.List {
		expr, ok := stmt.(*ast.ExprStmt)
		if !ok {
			continue
		}
		call, ok := expr.X.(*ast.CallExpr)
		if !ok {
			continue
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Parallel" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "t" {
				return true
			}
		}
	}
	return false
}
