package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
)

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens directly in the store (for bootstrapping)",
		Long: `Manage API tokens. These commands open the store directly (--data-dir or
--database-url, as the server), so they work before any token exists. A running
server's admins can also use POST /api/v1/tokens.`,
	}
	var name, role, output string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print its secret once",
		Args:  cobra.NoArgs,
	}
	csf := addStoreFlags(create)
	create.Flags().StringVar(&name, "name", "cli", "a name to tell the token apart")
	create.Flags().StringVar(&role, "role", "", "admin, operator or viewer (required)")
	create.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	envHelp(create.Flags())
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		r, err := scanfleet.ParseRole(role)
		if err != nil {
			return usagef("--role %q is not admin, operator or viewer", role)
		}
		store, err := csf.open(cmd.Context())
		if err != nil {
			return fmt.Errorf("open store (%s): %w", csf.describe(), err)
		}
		defer store.Close()
		tok, secret, err := scanfleet.NewToken(name, r, time.Now())
		if err != nil {
			return err
		}
		if err := store.CreateToken(cmd.Context(), tok); err != nil {
			return err
		}
		if output == "json" {
			return printOne(a.stdout, "json", map[string]any{"id": tok.ID, "name": tok.Name, "role": tok.Role, "token": secret}, nil)
		}
		fmt.Fprintf(a.stdout, "%s\n", secret)
		fmt.Fprintf(a.stderr, "created %s token %q (id %s); the secret above is shown only once\n", tok.Role, tok.Name, tok.ID)
		return nil
	}

	lst := &cobra.Command{Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs}
	lsf := addStoreFlags(lst)
	lst.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, jsonl or csv")
	envHelp(lst.Flags())
	lst.RunE = func(cmd *cobra.Command, _ []string) error {
		store, err := lsf.open(cmd.Context())
		if err != nil {
			return fmt.Errorf("open store (%s): %w", lsf.describe(), err)
		}
		defer store.Close()
		toks, err := store.ListTokens(cmd.Context())
		if err != nil {
			return err
		}
		t := &table{headers: []string{"ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED"}}
		for _, tk := range toks {
			t.add(tk, tk.ID, tk.Name, string(tk.Role), tk.Prefix+"…", fmtTime(&tk.CreatedAt), fmtTime(tk.LastUsedAt))
		}
		return t.print(a.stdout, output)
	}

	revoke := &cobra.Command{Use: "revoke ID", Short: "Revoke a token", Args: cobra.ExactArgs(1)}
	rsf := addStoreFlags(revoke)
	envHelp(revoke.Flags())
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		store, err := rsf.open(cmd.Context())
		if err != nil {
			return fmt.Errorf("open store (%s): %w", rsf.describe(), err)
		}
		defer store.Close()
		if err := store.DeleteToken(cmd.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "revoked token %s\n", args[0])
		return nil
	}
	cmd.AddCommand(create, lst, revoke)
	return cmd
}
