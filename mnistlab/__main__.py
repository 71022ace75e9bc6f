from mnistlab.cli import main

main()
