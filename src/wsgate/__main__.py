from wsgate.cli import main

main()
