package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/convsync/convsync/internal/version"
)

// runVersion prints the version details one field a line (see
// version.Details.Write): `convsync version` and `convsync --version`.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("convsync version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stderr, "usage: convsync version   (also: convsync --version)\n\n"+
				"Prints the version, the VCS revision and whether the tree was modified, and the Go\n"+
				"and DuckDB versions, one \"key: value\" line each.\n")
			return errHelp
		}
		return usageError("%v (see 'convsync version -h')", err)
	}
	if fs.NArg() > 0 {
		return usageError("version takes no arguments, got %q", fs.Arg(0))
	}
	d, err := version.Info(ctx)
	if err != nil {
		return err
	}
	return d.Write(stdout)
}
