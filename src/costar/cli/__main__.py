from costar.cli import main

main()
