from seke_hf.cli import main

raise SystemExit(main())
