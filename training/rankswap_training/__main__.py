from rankswap_training.cli import main

raise SystemExit(main())
