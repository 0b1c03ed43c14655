//! The CLI's tables, in the product guide's layout: a header, a rule, rows, and a count.

pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(&widths) {
            s.push_str(&format!(" {cell:<w$}  "));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = String::from("\n");
    out.push_str(&line(
        &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    out.push_str(&format!(
        " {}\n",
        "─".repeat(widths.iter().map(|w| w + 3).sum::<usize>())
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!("\n  {} items\n", rows.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_rows_are_counted() {
        let out = render(
            &["ID", "Status"],
            &[vec!["a-long-id".into(), "RUNNING".into()]],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "  ID          Status");
        assert_eq!(lines[3], "  a-long-id   RUNNING");
        assert!(out.ends_with("\n  1 items\n"));
    }
}
