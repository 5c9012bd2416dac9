from partialnet.console_script import main

main()
